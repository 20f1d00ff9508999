/**
 * Every limit and timeout Beam enforces, in one place.
 *
 * Each one is checked on read AND on write (see STYLE.md habit 3) and each has
 * a test that hits it. Comments say where a number comes from.
 */

/** Version of the signaling protocol (shared/signaling.ts). Bumped on any breaking change. */
export const SIGNALING_PROTOCOL_VERSION = 1;
/** Version of the stream protocol (shared/frames.ts, shared/mux.ts). */
export const STREAM_PROTOCOL_VERSION = 1;
/**
 * Path of the signaling endpoint. Everything under /.beam/ is Beam's own on
 * every host, shares included; all other paths belong to the shared app.
 */
export const SIGNALING_PATH = '/.beam/signal';
/** Label of the data channel that carries the stream protocol. */
export const STREAM_CHANNEL_LABEL = 'beam/1';
/** Label of the unordered, unreliable data channel that carries a UDP share's datagrams (shared/datagram.ts). */
export const DATAGRAM_CHANNEL_LABEL = 'beam/udp';
/**
 * Label of the data channel that carries the Noise handshake of a direct
 * path, before STREAM_CHANNEL_LABEL opens (transport/secure.ts).
 */
export const NOISE_CHANNEL_LABEL = 'beam/noise';

// ---------------------------------------------------------------- stream protocol

/**
 * Largest data-channel message Beam sends or accepts. 16 KiB is the size every
 * WebRTC stack (browsers included) delivers without fragmentation trouble.
 */
export const MAX_MESSAGE_BYTES = 16 * 1024;
/** Frame header: type (1) + stream id (4) + payload length (4). */
export const FRAME_HEADER_BYTES = 9;
/** Largest payload of one frame, so that one frame always fits in one message. */
export const MAX_FRAME_PAYLOAD = MAX_MESSAGE_BYTES - FRAME_HEADER_BYTES;
/**
 * Credit each side grants a new stream before any WINDOW frame. The receive
 * side of node-datachannel has no backpressure at all, so this bounds what a
 * peer may have in flight per stream.
 */
export const INITIAL_STREAM_WINDOW = 256 * 1024;
/**
 * Largest window one stream grows to. A stream whose consumer keeps up grows
 * its window toward what the path holds in flight (rate x max(2 RTT,
 * WINDOW_TARGET_MS)); usrsctp's own buffers hold several MiB on a fast path,
 * so 256 KiB alone caps a transfer well below the link's speed.
 */
export const MAX_STREAM_WINDOW = 16 * 1024 * 1024;
/** Growth beyond INITIAL_STREAM_WINDOW, summed over a connection's streams, stays under this. */
export const MAX_CONNECTION_WINDOW_GROWTH = 64 * 1024 * 1024;
/** Time a window should cover at the stream's current rate, at least (see MAX_STREAM_WINDOW). */
export const WINDOW_TARGET_MS = 250;
/**
 * On a path whose round trip is EARLY_WINDOW_RTT_MS or more, a new stream's
 * receive window opens at EARLY_STREAM_WINDOW at once, its growth beyond
 * INITIAL_STREAM_WINDOW taken from MAX_CONNECTION_WINDOW_GROWTH (and given
 * back when the stream ends), as HTTP/2 and QUIC stacks open theirs. 256 KiB
 * a round trip caps a stream at ~3 MB/s across an 80 ms path until its
 * window has grown; measured in the topology bench, a 1 MiB download
 * through a far server's gateway took 387 ms with it, 237 ms (localtunnel's
 * 224) with 2 MiB. A reader that stalls pins at most this much, and the
 * connection's streams together no more than the growth budget beyond their
 * initial windows, as with grown windows.
 */
export const EARLY_STREAM_WINDOW = 2 * 1024 * 1024;
/** See EARLY_STREAM_WINDOW: below this round trip, 256 KiB covers ~100 MB/s and windows grow fast enough. */
export const EARLY_WINDOW_RTT_MS = 10;
/**
 * Streams open at once on one peer connection (the issue asks for >= 1,000 in
 * flight). With INITIAL_STREAM_WINDOW each, a peer that stalls every stream
 * pins at most 256 MiB, plus MAX_CONNECTION_WINDOW_GROWTH.
 */
export const MAX_STREAMS_PER_PEER = 1024;
/**
 * SCTP send and receive buffer of node-datachannel's associations. The
 * default (~256 KiB) caps a 50 ms path at a few MB/s; this lets the window,
 * not the buffer, set the pace.
 */
export const SCTP_BUFFER_BYTES = 16 * 1024 * 1024;
/** Bytes queued in the channel (bufferedAmount) before the multiplexer stops handing it more. */
export const CHANNEL_HIGH_WATER_BYTES = 1024 * 1024;
/** Once bufferedAmount falls to this, queued frames flow again. */
export const CHANNEL_LOW_WATER_BYTES = 256 * 1024;
/** Bytes the multiplexer itself may queue (frames waiting for the channel) before writers wait. */
export const MUX_QUEUE_HIGH_WATER_BYTES = 1024 * 1024;
/** How long a stream that sent FIN waits for the peer's FIN_ACK before it closes anyway. */
export const FIN_ACK_TIMEOUT_MS = 10_000;
/**
 * FIN_ACK is not urgent: it rides along with the next message, or leaves
 * after this delay when nothing else is sent. This keeps one data-channel
 * send per request off the critical path.
 */
export const LAZY_FLUSH_MS = 10;
/** Largest RESET reason (an error code string). */
export const MAX_RESET_REASON_BYTES = 64;
/** Interval of PING frames that measure RTT and keep NAT bindings warm. */
export const PING_INTERVAL_MS = 2_500;
/**
 * A connection that has received nothing, not even a PONG, for this long is
 * taken for dead and closed, so its session moves to another path (a cut
 * link gives no other sign for ICE consent's 30 s). Longer than
 * libdatachannel's largest SCTP retransmission timeout (10 s) with room to
 * spare: an association that lost a few packets in a row waits out its
 * backoff in silence, its keepalives queued behind the retransmission, and
 * is not dead. At 8 s, downloads on a loaded machine were cut that way.
 */
export const PATH_DEAD_MS = 15_000;
/**
 * When signaling says the other side of a session lost the server, each path
 * checks that the other side still answers on it (Mux.probe). A PONG to a fresh
 * PING within this long keeps the path (a signaling blip), and so does traffic
 * still arriving in the window's second half (a PONG stuck behind a download).
 * A path that shows neither closes: the other process is gone. Short enough
 * that a request to a dead agent fails fast.
 */
export const PATH_PROBE_MS = 3_000;

// ---------------------------------------------------------------- HTTP over streams

/** Largest encoded request or response head carried at the start of a stream. */
export const MAX_HEAD_BYTES = 64 * 1024;
/** Largest number of header lines in one head (Node's own default is 2,000). */
export const MAX_HEADER_COUNT = 200;
/** Header lines a gateway client may send: room is left for the X-Forwarded-* and Upgrade lines the gateway adds. */
export const MAX_CLIENT_HEADER_COUNT = MAX_HEADER_COUNT - 4;
/** Largest total header bytes a gateway client may send (Node's --max-http-header-size default). */
export const MAX_HEADER_BYTES = 16 * 1024;
/**
 * Version of the HTTP head codec (shared/http-head.ts) an agent speaks, told
 * in its signaling handshake. 2 adds trailers: a body may travel as records
 * (shared/body-records.ts) that end with the trailer fields. A visitor sends
 * a framed request body only to an agent that says 2; an agent frames a
 * response only when the request head asks for trailers.
 */
export const HTTP_HEAD_VERSION = 2;
/** How long a signed-in visitor stays signed in to a share (`--oidc`): a working day and then some. */
export const SIGN_IN_SESSION_MS = 12 * 60 * 60 * 1000;
/** How long a sign-in may take, from the redirect to the provider to its callback. */
export const SIGN_IN_FLOW_MS = 10 * 60 * 1000;
/** Where the provider sends a browser back to (`--oidc`): on the share's own host, answered by the agent. */
export const SIGN_IN_CALLBACK_PATH = '/.beam/oidc/callback';
/** Signing out of a share (`--oidc`), answered by the agent. */
export const SIGN_OUT_PATH = '/.beam/logout';
/**
 * The scheme of the page a browser visitor's request comes from (browser-client/):
 * with its Host, where a sign-in sends the browser back to. The agent reads it
 * from browser visitors only, and the origin never sees it.
 */
export const PAGE_SCHEME_HEADER = 'beam-page-scheme';
/** Rules in one share's policy (beam.yml): a policy is read per request, in order. */
export const MAX_POLICY_RULES = 100;
/** How far a signed webhook's timestamp may be from the agent's clock (Stripe's, Slack's and Standard Webhooks' own default). */
export const WEBHOOK_TOLERANCE_S = 300;
/**
 * Largest body the agent reads whole to check a webhook's signature (GitHub
 * caps its payloads at 25 MB; Stripe, Slack and most senders stay far below
 * 1 MB). Past it: 413 BEAM_ERR_BODY_TOO_LARGE.
 */
export const MAX_WEBHOOK_BODY_BYTES = 25 * 1024 * 1024;
/** Largest data record in a framed body (shared/body-records.ts): a bigger chunk is cut into several. */
export const MAX_BODY_RECORD_BYTES = 64 * 1024;
/**
 * HTTP/2 streams one gateway client connection may have open at once
 * (SETTINGS_MAX_CONCURRENT_STREAMS). Each is a Beam stream to an agent; Node's
 * own default is 2^32-1. nginx allows 128, Go's server 250.
 */
export const H2_MAX_CONCURRENT_STREAMS = 128;
/**
 * Streams a client may reset within H2_RESET_WINDOW_MS before its connection
 * is closed with GOAWAY (ENHANCE_YOUR_CALM): the "rapid reset" attack
 * (CVE-2023-44487) opens and cancels streams to make the server do work the
 * client never waits for. A browser cancels a handful when the user moves on.
 */
export const H2_MAX_RESETS_PER_WINDOW = 200;
export const H2_RESET_WINDOW_MS = 10_000;
/**
 * A gateway client's HTTP/2 connection with no stream open and no frame for
 * this long is closed with GOAWAY (HTTP/1.1 keep-alive closes after 5 s; an
 * HTTP/2 connection costs more to set up and carries many requests).
 */
export const H2_IDLE_TIMEOUT_MS = 60_000;
/**
 * Frames nghttp2 may find invalid on one client connection, and streams it
 * may refuse (past SETTINGS_MAX_CONCURRENT_STREAMS), before the connection is
 * closed: Node's defaults are 1,000 and 100.
 */
export const H2_MAX_INVALID_FRAMES = 100;
export const H2_MAX_REJECTED_STREAMS = 100;
/**
 * Unanswered SETTINGS a peer may send before its connection closes: a
 * SETTINGS flood makes the server queue an ACK for each.
 */
export const H2_MAX_SETTINGS_PER_WINDOW = 100;
/**
 * How long a gateway client may take to send its request head, before a 408
 * (slowloris). Node's default is 60 s; Apache's mod_reqtimeout allows 20-40 s.
 */
export const GATEWAY_HEADERS_TIMEOUT_MS = 20_000;
/** How often the gateway looks for clients past GATEWAY_HEADERS_TIMEOUT_MS. */
export const HEADERS_TIMEOUT_CHECK_MS = 1_000;
/**
 * Concurrent TCP connections one client address may hold to a gateway's HTTP
 * entry; past it a new connection is closed at once. A browser opens about 6
 * per host, but an office behind one NAT shares an address and a load test's
 * keep-alive pool may hold hundreds: 1,024 leaves room for them while ~20,000
 * silent connections from one host (which once used up `beam serve`'s file
 * descriptors) can't be. Not applied behind --trust-proxy (every client then
 * has the proxy's address) unless set explicitly.
 */
export const GATEWAY_MAX_CONNECTIONS_PER_IP = 1_024;
/**
 * Links the server's gateway opens to HTTP shares as they register, so a
 * share's first visitor waits for no session setup (as ngrok's and
 * cloudflared's tunnels are up before the first request). Past this many
 * sessions held, a share's link opens at its first visitor instead.
 */
export const GATEWAY_WARM_LINKS = 256;

// ---------------------------------------------------------------- signaling

/** Largest socket.io packet the signaling server accepts (SDP offers are a few KiB). */
export const MAX_SIGNALING_MESSAGE_BYTES = 64 * 1024;
/** Largest SDP accepted in a description signal. */
export const MAX_SDP_BYTES = 32 * 1024;
/** Largest ICE candidate line accepted. */
export const MAX_CANDIDATE_BYTES = 1024;
/** Shares one signaling connection may register. */
export const MAX_SHARES_PER_CONNECTION = 16;
/** Sessions open at once with one share. */
export const MAX_SESSIONS_PER_SHARE = 64;
/** Shortest agent token `beam serve --token-file` accepts (16 random bytes as hex are 32). */
export const MIN_AGENT_TOKEN_LENGTH = 16;
/**
 * socket.io's heartbeat on signaling: the server pings every interval and
 * drops a client that doesn't answer within the timeout. A drop no longer
 * ends the sessions whose paths still answer (PATH_PROBE_MS), so it can be
 * this quick.
 */
export const SIGNALING_PING_INTERVAL_MS = 10_000;
export const SIGNALING_PING_TIMEOUT_MS = 5_000;
/**
 * How soon a client reconnects to signaling after a drop, doubling up to the
 * max. Agents wait longer and with jitter: a restarted server must not get
 * every agent back in the same instant. The server's own gateway is on the
 * same host as its signaling and comes back first.
 */
export const AGENT_RECONNECT_DELAY_MS = 250;
export const AGENT_RECONNECT_DELAY_MAX_MS = 5_000;
export const AGENT_RECONNECT_JITTER = 0.5;
export const GATEWAY_RECONNECT_DELAY_MS = 100;
export const GATEWAY_RECONNECT_DELAY_MAX_MS = 2_000;
/**
 * Per client address, on the signaling server (the server's own gateway is
 * exempt): open connections, share registrations a minute, and sessions
 * opened a minute. Over them: BEAM_ERR_RATE_LIMITED.
 */
export const MAX_CONNECTIONS_PER_IP = 64;
export const REGISTRATIONS_PER_IP_PER_MINUTE = 60;
export const SESSIONS_PER_IP_PER_MINUTE = 600;
/** Sessions one visitor connection may have open at once. */
export const MAX_SESSIONS_PER_VISITOR = 1024;
/** Pools whose turn counter (which member the next session goes to) the signaling core keeps; the oldest go past this. */
export const MAX_POOL_TURNS_KEPT = 10_000;
/** How often a visitor with sessions on a pooled share asks signaling for a member it has no session with yet (a member that joined since). */
export const POOL_PROBE_MS = 2_000;
/** A pool member this side failed to set a session up with is tried again, POOL_PROBE_MS / 10 later, then twice as long each time, up to this. */
export const POOL_REPROBE_MAX_MS = 30_000;
/**
 * A pool member whose path has heard nothing from it (not even a PONG, due
 * every PING_INTERVAL_MS) for this long gets no new streams while another
 * member answers: a frozen process or a cut link leaves the rotation in
 * seconds, long before PATH_DEAD_MS closes its path.
 */
export const POOL_SILENT_MS = 2 * PING_INTERVAL_MS + 1_000;
/** How many other members of a pool the gateway tries for a request whose member failed before answering (idempotent, no body). */
export const POOL_RETRIES = 2;
/**
 * Sessions one client address may have open with one share at once (the
 * server's own gateway is exempt and has a session per share of its own,
 * outside MAX_SESSIONS_PER_SHARE). Without it one address filled a share's
 * MAX_SESSIONS_PER_SHARE with sessions that never sent an offer, and the
 * share's visitors got 429.
 */
export const MAX_SESSIONS_PER_SHARE_PER_ADDRESS = 16;
/**
 * A session whose visitor sent no offer nor relay request within this is
 * ended by the server (BEAM_ERR_PEER_GONE to both sides): a visitor sends
 * one at once, so a session that made no progress holds no slot for long.
 */
export const SESSION_OFFER_TIMEOUT_MS = 10_000;
/**
 * Signals (offers, answers, candidates, relay requests) one connection may
 * send a second, and all visitors together toward one share; over it they are
 * dropped and the sender hears BEAM_ERR_RATE_LIMITED. A session's setup is an
 * offer and a few dozen candidates; 12,000 offers in 4 s from one socket once
 * cost an agent 9 s of CPU. The server's own gateway is exempt from the
 * per-connection budget; agents answer for all their visitors and get more.
 */
export const SIGNALS_PER_VISITOR_PER_SECOND = 100;
export const SIGNALS_PER_AGENT_PER_SECOND = 5_000;
export const SIGNALS_PER_SHARE_PER_SECOND = 400;
/** How long a dropped agent's name stays reserved for the holder of its resume token. */
export const SHARE_RESUME_GRACE_MS = 30_000;
/**
 * With --redis, a live name expires this long after its node last refreshed
 * it (every NAME_HEARTBEAT_MS): a dead node's names come free in seconds,
 * and their agents take them back on another node with their resume tokens.
 */
export const NAME_TTL_MS = 15_000;
export const NAME_HEARTBEAT_MS = 5_000;
/** How long a closing agent waits for the server to confirm its names are free (share:close). */
export const SHARE_CLOSE_TIMEOUT_MS = 2_000;
/** Shortest and longest share names (a DNS label is at most 63 bytes). */
export const MIN_NAME_LENGTH = 3;
export const MAX_NAME_LENGTH = 63;

// ---------------------------------------------------------------- gateway and agent

/**
 * Peer connections an agent sets up at once that carry no path yet (each is
 * a DTLS and SCTP stack in libdatachannel, with its threads' work); offers
 * past it are dropped until some come up or fail. Without a bound an offer
 * flood cost an agent seconds of CPU and a legitimate request waited 5.8 s.
 */
export const MAX_PENDING_PEERS = 64;

/**
 * An agent keeps the signals that reach it before their session does
 * (a server that passes them ahead of it: signaling/server.ts says how a
 * cluster once did) and hands them over when the session comes: for at
 * most this many sessions, the oldest dropped first, and at most
 * MAX_EARLY_SIGNALS each (an offer and its candidates). What is dropped
 * costs that session its path, not the agent its memory.
 */
export const MAX_EARLY_SIGNAL_SESSIONS = 8;
export const MAX_EARLY_SIGNALS = 16;
/**
 * A network backend's visitors (`--via libp2p`) whose Noise handshake is
 * under way at once, per agent: each costs a key exchange and waits up to
 * HANDSHAKE_TIMEOUT_MS. Past it a new one is closed at once, as offers past
 * MAX_PENDING_PEERS are dropped.
 */
export const MAX_PENDING_HANDSHAKES = 64;
/** Streams of the share's protocol one libp2p connection may have open at once: a visitor's session takes one, a new session after a lost path another. */
export const LIBP2P_MAX_INBOUND_STREAMS = 8;
/**
 * Offers one session may send a minute: its first attempts
 * (LINK_SETUP_ATTEMPTS) and a direct retry now and then (DIRECT_RETRY_MS).
 */
export const MAX_OFFERS_PER_SESSION_PER_MINUTE = 8;
/** How long the gateway waits for a peer connection to a share before answering 502. */
export const AGENT_CONNECT_TIMEOUT_MS = 10_000;
/**
 * An agent registers its share once it has loaded what a visitor's first
 * handshake needs (its key pair, Noise), or after this long, whichever comes
 * first (peer-agent/agent.ts warmUp).
 */
export const WARM_UP_WAIT_MS = 1_000;
/**
 * An agent whose server's gateway opens a link to it as it registers
 * (Registered.gatewayLink) announces its share once that link is up, or
 * after this long: a visitor who comes the moment the link prints finds the
 * path ready, as ngrok's and cloudflared's links are up when they print.
 */
export const GATEWAY_LINK_WAIT_MS = 1_000;
/**
 * How long a new stream waits for a session that lost its path (a cut link,
 * a reconnect) to get one back before it fails with BEAM_ERR_AGENT_UNREACHABLE.
 */
export const PATH_WAIT_MS = 5_000;
/** Peer-connection setup attempts per link (all within AGENT_CONNECT_TIMEOUT_MS) before visitors get 502. */
export const LINK_SETUP_ATTEMPTS = 3;
/**
 * With direct all a session can have (--relay never), an attempt not up
 * this long after it started gives way to a new one (LINK_SETUP_ATTEMPTS fit
 * in AGENT_CONNECT_TIMEOUT_MS): one that hangs, with no error from ICE,
 * DTLS or SCTP, would otherwise cost the whole session.
 */
export const DIRECT_ATTEMPT_TIMEOUT_MS = 4_000;
/** How long the agent waits for the origin's response head, once the request is fully sent, before answering 504. */
export const DEFAULT_ORIGIN_TIMEOUT_MS = 30_000;

/**
 * Idle keep-alive connections Node's http client keeps open to the origin
 * (Node's own default), for what the agent still sends with it: bodies that
 * may end with trailers, an Expect header, the inspector's replays. At 100
 * concurrent visitor requests a cap of 64 closed and reopened connections all
 * the time: the origin then spent 40 µs a request instead of 21
 * (bench/diag/floor). undici's pool, which carries every other request
 * (peer-agent/origin-pool.ts), keeps every connection it opened until it has
 * been idle for the origin's keep-alive hint less 2 s, or 4 s with no hint.
 */
export const ORIGIN_IDLE_SOCKETS = 256;
/** Largest UDP payload a UDP share carries: one data-channel message, less the flow id. */
export const MAX_DATAGRAM_BYTES = 16 * 1024 - 4;
/** UDP flows (local client addresses) one `beam connect` carries at once; the oldest idle one makes room. */
export const MAX_UDP_FLOWS = 256;
/** A UDP flow with no datagram either way for this long is forgotten (its origin socket closed). */
export const UDP_FLOW_IDLE_MS = 120_000;
/** TCP keepalive on origin and local sockets of TCP shares, so idle connections outlive NAT and firewall timeouts. */
export const TCP_KEEPALIVE_MS = 30_000;
/** How long a draining server (SIGTERM) lets in-flight requests finish before it closes them. */
export const DRAIN_TIMEOUT_MS = 10_000;
/** Port the embedded server tries first; the next free one is taken if it is busy. */
export const DEFAULT_EMBEDDED_PORT = 7070;
/** How many ports after DEFAULT_EMBEDDED_PORT the embedded server tries. */
export const EMBEDDED_PORT_ATTEMPTS = 20;

// ---------------------------------------------------------------- paths: direct, TURN, relay

/** Path of the relay endpoint (WebSocket): it splices a visitor's and an agent's ciphertext. */
export const RELAY_PATH = '/.beam/relay';
/**
 * Path of the page's bridge (gateway/bridge.ts): a share's browser page runs
 * its multiplexer on a WebSocket to the gateway here while its peer
 * connection comes up.
 */
export const BRIDGE_PATH = '/.beam/bridge';
/** Set by the gateway on the requests its bridge carries (and dropped from anyone else's): the agent answers them a browser page's way. */
export const BRIDGE_HEADER = 'beam-bridge';
/** The bridge's WebSocket: largest message, and when the gateway stops (and starts again) reading the agent's side for it. */
export const BRIDGE_MAX_MESSAGE_BYTES = 256 * 1024;
/** Streams one bridge carries at once (a browser keeps far fewer requests open); past it a stream is reset with BEAM_ERR_TOO_MANY_STREAMS. */
export const BRIDGE_MAX_STREAMS = 256;
export const BRIDGE_HIGH_WATER_BYTES = 1024 * 1024;
export const BRIDGE_LOW_WATER_BYTES = 256 * 1024;
/** How long a browser page waits for its bridge to open before it waits for its peer connection alone. */
export const BROWSER_BRIDGE_TIMEOUT_MS = 3_000;
/** How long a page on its bridge waits for the app's first answer before it starts its peer connection anyway. */
export const BRIDGE_FIRST_ANSWER_WAIT_MS = 1_000;
/**
 * How long a visitor waits for a direct (or TURN) path before it also opens
 * the relay (the issue asks for 3 s or less). Direct keeps trying after that,
 * and new streams move to it once it is up.
 */
export const DIRECT_PATH_TIMEOUT_MS = 2_000;
/**
 * While a session rides TURN or the relay, direct WebRTC is tried again after
 * DIRECT_RETRY_MS; each retry that fails doubles the wait, up to
 * MAX_DIRECT_RETRY_MS (a NAT that never lets a pair form costs little).
 */
export const DIRECT_RETRY_MS = 15_000;
export const MAX_DIRECT_RETRY_MS = 120_000;
/** How long the Noise handshake may take on any path. */
export const HANDSHAKE_TIMEOUT_MS = 5_000;
/**
 * After a GOAWAY (shared/frames.ts), how long its sender waits for the other
 * side to hang up before it closes the channel itself.
 */
export const GOAWAY_LINGER_MS = 5_000;
/**
 * A visitor reached through a network backend waits this long after Noise
 * for the agent's verdict (its first frame: a GOAWAY, or a PING that lets it in).
 */
export const VERDICT_TIMEOUT_MS = 5_000;
/** How long the relay holds one side of a session while the other side arrives. */
export const RELAY_PAIR_TIMEOUT_MS = 10_000;
/** Largest WebSocket message the relay accepts (Noise frames are at most 64 KiB). */
export const RELAY_MAX_MESSAGE_BYTES = 256 * 1024;
/**
 * Largest message the Noise layer hands its pipe at once (transport/secure.ts).
 * What it queued while the pipe was full goes out in pieces this big once the
 * pipe drains: whole, a backlog of up to a megabyte was one message past
 * RELAY_MAX_MESSAGE_BYTES, and the far side's WebSocket closed the relay.
 */
export const SECURE_PIPE_MESSAGE_BYTES = 64 * 1024;
/**
 * The stream protocol's messages written in one loop turn go into Noise as
 * one write of up to this many bytes: one Noise frame (its 2-byte length and
 * 16-byte tag included, at most SECURE_PIPE_MESSAGE_BYTES) and one relay
 * message instead of one per 16 KiB message, so a bulk transfer pays each
 * per-message cost (the cipher's setup, the WebSocket's framing, the relay's
 * splice, the decoder) a quarter as often.
 */
export const SECURE_WRITE_BYTES = SECURE_PIPE_MESSAGE_BYTES - 18;
/** Bytes the relay queues toward one side before it stops reading from the other. */
export const RELAY_HIGH_WATER_BYTES = 1024 * 1024;
/** Once the queue toward a side falls to this, the relay reads from the other side again. */
export const RELAY_LOW_WATER_BYTES = 256 * 1024;
/** Lifetime of the TURN REST credentials handed out with each session (coturn use-auth-secret). */
export const TURN_CREDENTIAL_TTL_S = 12 * 60 * 60;
/** Largest --relay-max-seconds: a timer holds at most 2^31-1 ms. */
export const MAX_RELAY_CAP_SECONDS = 2_000_000;
/** Relayed sessions one server holds at once. */
export const MAX_RELAY_SESSIONS = 4096;

// ---------------------------------------------------------------- access

/**
 * A private share's secret, on the gateway path: the `beam_secret` query
 * parameter of the link, then a cookie of the same name scoped to the share's
 * host (set by the agent), or a `Beam-Secret` header (scripts, webhooks).
 * `beam connect` proves it in the Noise handshake instead (the link's
 * `#secret=`). The agent strips all three before the origin sees the request.
 */
export const SECRET_PARAM = 'beam_secret';
export const SECRET_COOKIE = 'beam_secret';
export const SECRET_HEADER = 'beam-secret';
/**
 * --max-visitors counts a gateway visitor (a client address) until it has
 * made no request for this long; a peer-to-peer visitor while its session lasts.
 */
export const VISITOR_IDLE_MS = 60_000;

// ---------------------------------------------------------------- inspector

/** The inspector's first port, as ngrok's; the next free one is taken when it is busy (INSPECT_PORT_ATTEMPTS). */
export const DEFAULT_INSPECT_PORT = 4040;
export const INSPECT_PORT_ATTEMPTS = 20;
/** Exchanges the inspector keeps; the oldest goes first. */
export const INSPECT_MAX_EXCHANGES = 500;
/**
 * Bytes of each body the inspector keeps (the rest is counted, not kept):
 * 500 exchanges x 2 bodies x 64 KiB bounds it at 64 MiB.
 */
export const INSPECT_BODY_BYTES = 64 * 1024;
/** The inspector keeps ended exchanges' headers and bodies in slabs of this size (peer-agent/inspect.ts); a slab goes when its last exchange does. */
export const INSPECT_SLAB_BYTES = 1024 * 1024;
/** Largest body an edited replay may carry. */
export const INSPECT_REPLAY_BODY_BYTES = 1024 * 1024;
/** Live views (Server-Sent Events) open at once; each holds a socket. */
export const INSPECT_MAX_WATCHERS = 32;

// ---------------------------------------------------------------- beam.yml

/** Shares one config file may declare. */
export const MAX_CONFIG_SHARES = 32;
/** Largest config file read. */
export const MAX_CONFIG_BYTES = 256 * 1024;

// ---------------------------------------------------------------- the origin, seen from the CLI

/** How long one probe of a local port may take (dev-server detection, waiting for the origin). */
export const DETECT_PROBE_TIMEOUT_MS = 1_000;
/** While the origin is down, the CLI checks it this often, to say when it is up. */
export const ORIGIN_WAIT_POLL_MS = 500;

/** Binding requests the server's own STUN answers from one address a second (gateway/stun.ts); ICE sends a few per candidate pair. */
export const STUN_REQUESTS_PER_SECOND = 50;

/** How often `beam connect` on a terminal redraws its path line with the RTT now. */
export const RTT_REFRESH_MS = 1_000;

// ---------------------------------------------------------------- gateway compression

/** Responses declared smaller than this go out uncompressed: the framing would cost more than it saves. */
export const COMPRESS_MIN_BYTES = 1024;

// ---------------------------------------------------------------- browser visitors (browser-client/)

/** Where the gateway serves the bootstrap's assets on every share host. */
export const BROWSER_ASSET_PATH = '/.beam/client/';
/** The Service Worker's script; served with `Service-Worker-Allowed: /` so it may take the whole share. */
export const BROWSER_WORKER_PATH = '/.beam/client/sw.js';
/** Cookies one share's jar keeps; the oldest go first. */
export const MAX_JAR_COOKIES = 200;
/** Largest cookie (name and value) the jar takes, as browsers cap it. */
export const MAX_JAR_COOKIE_BYTES = 4096;
/** How long the page may take to set up any path (direct or relay) before it loads the app through the gateway. */
export const BROWSER_CONNECT_TIMEOUT_MS = 8_000;
/** How long the worker waits for a page to hand it the tunnel before it sends a request through the gateway. */
export const WORKER_TUNNEL_WAIT_MS = 2_000;
/** A request body up to this size goes to the page whole (and can be sent again on a 307 or 308); a bigger one streams. */
export const WORKER_BUFFERED_BODY_BYTES = 1024 * 1024;
/** Request body bytes the worker sends the page beyond what the agent has taken. */
export const WORKER_UPLOAD_WINDOW_BYTES = 1024 * 1024;
/** Response bytes the page sends the worker beyond what the app has read. */
export const WORKER_RESPONSE_WINDOW_BYTES = 1024 * 1024;
/** Largest HTML, CSS or script response the page holds whole, to point its localhost URLs at the share; bigger ones pass as they are. */
export const MAX_REWRITE_BYTES = 8 * 1024 * 1024;
/** Redirects the Service Worker follows for one fetch, as the Fetch standard's limit. */
export const MAX_REDIRECTS = 20;
/**
 * Set by the bootstrap on a non-secure origin (no Service Worker there): the
 * gateway proxies that browser's navigations from then on instead of serving
 * the bootstrap again, and never passes the cookie to the origin.
 */
export const BROWSER_GATEWAY_COOKIE = 'beam_via';

/**
 * The page's first stage: the bootstrap loads the app's first document in its
 * frame through the gateway's HTTP path at once, before its own scripts run
 * (gateway/first-stage.ts). This cookie (HttpOnly, SameSite=Strict) marks that
 * browser's requests until the page takes over; the origin never sees it.
 */
export const BROWSER_FRAME_COOKIE = 'beam_frame';
/** Where the page collects what the first stage left for it (the app's cookies, the origin's address). */
export const FIRST_STAGE_PATH = '/.beam/first-stage';
/** How long a first stage stays open for its page to collect it (also the cookie's Max-Age). */
export const FIRST_STAGE_TTL_MS = 30_000;
/** Pages in their first stage at once, per gateway; past it a new page gets none (it starts as a returning visitor's does). */
export const MAX_FIRST_STAGES = 1_024;
/** Set-Cookie headers one first stage keeps for its page; later ones stay in the browser's own jar only. */
export const MAX_FIRST_STAGE_COOKIES = 64;
/** Bytes of Set-Cookie headers one first stage keeps (so all stages together hold 16 MiB at most); a header past them is not kept. */
export const MAX_FIRST_STAGE_COOKIE_BYTES = 16 * 1024;
/** How long the page's collection waits for first-stage requests still on their way to an answer. */
export const FIRST_STAGE_WAIT_MS = 3_000;
/** How long the page waits for its worker to take the app's frame over from the first stage before it collects the stage anyway. */
export const FIRST_STAGE_HANDOVER_MS = 2_000;
/**
 * A visitor back (Beam's worker already runs): how long its bootstrap waits
 * for the worker to say it passes the frame's first document, and what that
 * document loads, to the gateway (the first stage); with no answer (a worker
 * of an older Beam, or one slow to start) the page declines the stage and the
 * worker answers the frame through the page, as before.
 */
export const WORKER_STAGE_ANSWER_MS = 300;
/** How long the worker waits, after that word, for the frame's navigation it passes to the gateway. */
export const WORKER_STAGE_OFFER_MS = 2_000;
/** Frames whose requests the worker passes to the gateway at once, until their pages take them (the oldest goes past it). */
export const MAX_WORKER_STAGED_FRAMES = 16;
/**
 * This cookie (HttpOnly, SameSite=Lax, BROWSER_PAGE_COOKIE_MAX_AGE_S) marks a
 * browser that has the page's worker: the worker's script sets it, and so, with
 * `beam serve --browser-first-load top`, does every page. A marked browser's
 * navigations get no first stage: its page would decline one, since the
 * worker answers its frame. With `--browser-first-load top`, where a new
 * visitor's navigation gets the app's own document, top-level, through the
 * gateway (its loader then adds the page as a small frame: SESSION_PAGE_PATH),
 * a marked browser's navigations get the bootstrap page, as without the
 * option. The origin never sees it.
 */
export const BROWSER_PAGE_COOKIE = 'beam_page';
/** The marker's lifetime, renewed by each page: as long as the worker it stands for (browsers cap cookies at 400 days). */
export const BROWSER_PAGE_COOKIE_MAX_AGE_S = 400 * 24 * 60 * 60;
/** The page without an app frame, in a small frame of a top-level first document: the session, the badge, the worker's tunnel. */
export const SESSION_PAGE_PATH = '/.beam/session';
/**
 * How long the worker keeps a document it carried for a top-level form POST
 * (answered with a 303 to the same address, for the bootstrap's frame to take
 * once); after that the frame asks the app again.
 */
export const WORKER_STASH_TTL_MS = 10_000;

// ---------------------------------------------------------------- WebSockets the agent speaks for a browser page

/** Largest WebSocket message carried between a browser page and the origin (ws's own default is 100 MiB). */
export const MAX_WS_MESSAGE_BYTES = 16 * 1024 * 1024;

/** Ended sessions whose end code the relay still gives a late side (a relay attempt racing the session's end). */
export const ENDED_SESSIONS_KEPT = 1024;

// ---------------------------------------------------------------- the embedded server's https (beam --tls)

/**
 * How long the local certificate authority is good for: a year, not mkcert's
 * ten, since teammates install it as a trust root. Beam makes a new one when
 * fewer than LOCAL_CERT_DAYS are left, and teammates trust that one anew.
 */
export const LOCAL_CA_DAYS = 365;
/** How long each start's certificate is good for; a new one is made at every start. */
export const LOCAL_CERT_DAYS = 30;
/** Where the embedded server offers its authority's certificate, on every share host. */
export const LOCAL_CA_PATH = '/.beam/beam-local-ca.pem';
/** Certificates made per share name (SNI) that the embedded https server keeps. */
export const SNI_CACHE_SIZE = 256;

/** The DNS-SD service type a share is announced under on the LAN (`beam <port> --lan`): `<name>._beam._tcp.local`. */
export const LAN_SERVICE_TYPE = 'beam';
/** How long `beam connect <name>` asks the LAN by mDNS before it gives up with BEAM_ERR_SHARE_NOT_FOUND. */
export const LAN_FIND_TIMEOUT_MS = 3_000;
/** After the first share of that name answers, how long `beam connect <name>` listens for a second one (two would be ambiguous). */
export const LAN_FIND_SETTLE_MS = 300;

/** Network backends a share can go through (`--via`): Beam's own server (signaling, its relay), or libp2p with no Beam server at all. */
export const BACKEND_NAMES = ['server', 'libp2p'] as const;
/** A `beam connect` link for a share on the libp2p backend: `beam+libp2p://<name>/<the agent's relayed multiaddr>#secret=...`. */
export const LIBP2P_LINK_PROTOCOL = 'beam+libp2p:';
/** The libp2p protocol a share is served on: this prefix and its name, so one node can serve several shares. */
export const LIBP2P_PROTOCOL_PREFIX = '/beam/1/';
/** STUN servers for the libp2p backend's hole punch when --stun names none: the public list @libp2p/webrtc uses by default. */
export const LIBP2P_DEFAULT_STUN: readonly string[] = [
  'stun:stun.l.google.com:19302',
  'stun:global.stun.twilio.com:3478',
  'stun:stun.cloudflare.com:3478',
  'stun:stun.services.mozilla.com:3478',
];
/** How long `beam --via libp2p` waits for a circuit-relay reservation through its bootstrap peers before it gives up. */
export const LIBP2P_RESERVE_TIMEOUT_MS = 20_000;
/** How long `beam connect` waits for the libp2p hole punch (SDP over the relay, then ICE) before BEAM_ERR_AGENT_UNREACHABLE. */
export const LIBP2P_DIAL_TIMEOUT_MS = 15_000;
/**
 * The public libp2p bootstrap peers (as js-libp2p and kubo ship them): the
 * default way into the public network, where the agent finds a circuit relay.
 */
export const LIBP2P_PUBLIC_BOOTSTRAP: readonly string[] = [
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN',
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa',
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmbLHAnMoJPWSCR5Zhtx6BHJX9KiKNN6tpvbUcqanj75Nb',
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmcZf59bWwK5XFi76CZX8cbJ4BhTzzA3gU1ZjYZcYW3dwt',
  '/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ',
];
