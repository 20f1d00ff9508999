/**
 * Prometheus metrics for `beam serve` (prom-client), served at /metrics on
 * the server's own host. Everything is read at scrape time except request
 * counts and latencies, which the gateway records as requests end.
 */

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { PathKind } from '../shared/paths.js';
import type { SignalingServer } from '../signaling/server.js';

export interface GatewayMetricsSource {
  /** The gateway's sessions with agents (transport/session-pool.ts). */
  pool: { bytes(): { sent: number; received: number }; paths(): Record<PathKind, number>; readonly directFailures: number };
  gateway: { readonly requestsInFlight: number; readonly bridgesOpen: number; readonly bridgeStreams: number; readonly pageRequests: number };
}

export interface ServerMetrics {
  registry: Registry;
  /** Records a finished gateway request. */
  observeRequest(status: number, seconds: number): void;
}

export interface RelayMetricsSource {
  readonly bytesRelayed: number;
  readonly sessionCount: number;
}

/** `redisUp`: with --redis, whether the node's Redis connection is ready. */
export function createMetrics(signaling: SignalingServer, gateway: GatewayMetricsSource, relay: RelayMetricsSource, redisUp?: () => boolean): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'beam_process_' });
  if (redisUp) {
    new Gauge({
      name: 'beam_redis_up',
      help: '1 while this node is connected to its Redis, else 0',
      registers: [registry],
      collect() {
        this.set(redisUp() ? 1 : 0);
      },
    });
  }
  new Gauge({
    name: 'beam_shares',
    help: 'Shares registered and online',
    registers: [registry],
    async collect() {
      this.set(await signaling.shareCount());
    },
  });
  new Gauge({
    name: 'beam_sessions',
    help: 'Signaling sessions open, by visitor kind',
    labelNames: ['visitor'] as const,
    registers: [registry],
    collect() {
      for (const [visitor, n] of Object.entries(signaling.sessionCounts())) this.set({ visitor }, n);
    },
  });
  new Gauge({
    name: 'beam_gateway_links',
    help: "The gateway's open links to agents, by path (direct, turn, relay)",
    labelNames: ['path'] as const,
    registers: [registry],
    collect() {
      for (const [path, n] of Object.entries(gateway.pool.paths())) this.set({ path }, n);
    },
  });
  new Counter({
    name: 'beam_ice_failures_total',
    help: 'Direct (ICE) attempts of the gateway that failed; the session then tried TURN or the relay',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(gateway.pool.directFailures);
    },
  });
  new Gauge({
    name: 'beam_gateway_requests_in_flight',
    help: 'Gateway requests being served',
    registers: [registry],
    collect() {
      this.set(gateway.gateway.requestsInFlight);
    },
  });
  new Gauge({
    name: 'beam_gateway_bridges',
    help: "Browser pages' bridges open now (their requests while their peer connection comes up)",
    registers: [registry],
    collect() {
      this.set(gateway.gateway.bridgesOpen);
    },
  });
  new Counter({
    name: 'beam_gateway_bridge_streams_total',
    help: "Requests (and WebSockets) browser pages' bridges carried to agents",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(gateway.gateway.bridgeStreams);
    },
  });
  new Counter({
    name: 'beam_gateway_page_requests_total',
    help: "Requests carried for browser pages in their first stage (the app's first document, and what it loads before the page takes over); not in beam_gateway_requests_total",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(gateway.gateway.pageRequests);
    },
  });
  // A counter read at scrape time: the links keep the running totals.
  new Counter({
    name: 'beam_gateway_peer_bytes_total',
    help: 'Bytes the gateway exchanged with agents over WebRTC, by direction',
    labelNames: ['direction'] as const,
    registers: [registry],
    collect() {
      const { sent, received } = gateway.pool.bytes();
      this.reset();
      this.inc({ direction: 'sent' }, sent);
      this.inc({ direction: 'received' }, received);
    },
  });
  new Counter({
    name: 'beam_relay_bytes_total',
    help: 'Ciphertext bytes the relay forwarded between visitors and agents',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(relay.bytesRelayed);
    },
  });
  new Gauge({
    name: 'beam_relay_sessions',
    help: 'Sessions the relay is splicing or holding for their second side',
    registers: [registry],
    collect() {
      this.set(relay.sessionCount);
    },
  });
  const requests = new Counter({
    name: 'beam_gateway_requests_total',
    help: 'Gateway requests finished, by status class',
    labelNames: ['status'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'beam_gateway_request_duration_seconds',
    help: 'Time from request to the end of the response at the gateway',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  return {
    registry,
    observeRequest(status, seconds) {
      requests.inc({ status: `${Math.floor(status / 100)}xx` });
      latency.observe(seconds);
    },
  };
}
