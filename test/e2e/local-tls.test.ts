/**
 * `beam <port> --tls`: the embedded server serves https with a certificate
 * from a local authority made once under the config directory (key 0600),
 * good for localhost, this machine's LAN addresses and (made when a client
 * asks, by SNI) each share's own `<name>.localhost`; the CLI
 * says how teammates trust it, and offers its certificate for download.
 */

import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lanAddresses } from '../../app/lan.js';
import { permitted } from '../../app/local-ca.js';
import { type Origin, startOrigin } from '../helpers/origin.js';
import { BeamProcess } from '../helpers/procs.js';

let origin: Origin;
let configDir: string;

beforeAll(async () => {
  origin = await startOrigin();
  configDir = mkdtempSync(path.join(tmpdir(), 'beam-config-'));
});
afterAll(async () => {
  await origin?.close();
});

/** GET over https from 127.0.0.1:`port`, trusting `ca` only; resolves with the status, body and the server's certificate. */
function get(port: number, pathname: string, ca: Buffer, host: string): Promise<{ status: number; body: string; cert: X509Certificate }> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port, path: pathname, ca, headers: { host }, agent: false }, (res) => {
        const peer = (res.socket as import('node:tls').TLSSocket).getPeerX509Certificate();
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, cert: peer as X509Certificate }));
      })
      .on('error', reject);
  });
}

describe('beam --tls (the embedded server over https)', () => {
  it('serves the share over https with a certificate from a local authority, names the LAN link, and says how to trust the authority', async () => {
    const env = { BEAM_CONFIG_DIR: configDir };
    const first = new BeamProcess(['http', String(origin.port), '--tls', '--json', '--no-inspect'], env);
    let fingerprint: string;
    let serial: string;
    try {
      const ready = await first.waitFor('ready');
      const url = new URL(ready['url'] as string);
      expect(url.protocol).toBe('https:');
      const ca = ready['ca'] as { file: string; fingerprint: string; url: string };
      expect(ca.file).toBe(path.join(configDir, 'ca', 'beam-local-ca.pem'));
      expect(statSync(path.join(configDir, 'ca', 'beam-local-ca.key')).mode & 0o777).toBe(0o600);
      const caPem = readFileSync(ca.file);
      const authority = new X509Certificate(caPem);
      expect(ca.fingerprint).toBe(authority.fingerprint256);
      expect(authority.ca).toBe(true);
      fingerprint = ca.fingerprint;
      // Trusting the authority alone is enough: the certificate chains to it, for 127.0.0.1 and the share's name.
      const res = await get(Number(url.port), '/hello', caPem, url.host);
      expect(res.status).toBe(200);
      expect(res.body).toBe('hello from /hello');
      expect(res.cert.checkIssued(authority)).toBe(true);
      // The share's own name (browsers take no *.localhost wildcard): made when the client asked for it.
      expect(res.cert.checkHost(url.hostname)).toBe(url.hostname);
      // By address, as a teammate on the LAN opens it: the certificate names 127.0.0.1 and every LAN address.
      const byAddress = await get(Number(url.port), '/by-ip', caPem, `127.0.0.1:${url.port}`);
      expect(byAddress.body).toBe('hello from /by-ip');
      expect(byAddress.cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
      for (const ip of lanAddresses().filter(permitted)) expect(byAddress.cert.checkIP(ip)).toBe(ip);
      serial = byAddress.cert.serialNumber;
      if (lanAddresses().length > 0) expect(ready['lan']).toBe(`https://${lanAddresses()[0]}:${url.port}/`);
      // The authority's certificate, to download.
      const download = await get(Number(url.port), '/.beam/beam-local-ca.pem', caPem, url.host);
      expect(download.body).toBe(caPem.toString());
      expect(new URL(ca.url).pathname).toBe('/.beam/beam-local-ca.pem');
    } finally {
      await first.kill();
    }
    // The next start keeps the authority (teammates trust it once) and makes a new certificate.
    const second = new BeamProcess(['http', String(origin.port), '--tls', '--json', '--no-inspect'], env);
    try {
      const ready = await second.waitFor('ready');
      expect((ready['ca'] as { fingerprint: string }).fingerprint).toBe(fingerprint);
      const url = new URL(ready['url'] as string);
      const res = await get(Number(url.port), '/again', readFileSync((ready['ca'] as { file: string }).file), `127.0.0.1:${url.port}`);
      expect(res.status).toBe(200);
      expect(res.cert.serialNumber).not.toBe(serial);
    } finally {
      await second.kill();
    }
  });

  it('the human output tells teammates how to trust the authority, with its fingerprint', async () => {
    const proc = new BeamProcess(['http', String(origin.port), '--tls', '--no-inspect'], { BEAM_CONFIG_DIR: configDir });
    try {
      const lines = await proc.waitFor((e) => e.event === 'text' && String(e['line']).includes('Press Ctrl+C'));
      expect(lines).toBeDefined();
      const text = proc.events.map((e) => String(e['line'] ?? '')).join('\n');
      expect(text).toMatch(/Link: {2}https:\/\//);
      expect(text).toMatch(/fingerprint is ([0-9A-F]{2}:){31}[0-9A-F]{2}/);
      expect(text).toContain('security add-trusted-cert');
      expect(text).toContain('certutil -addstore -user Root');
    } finally {
      await proc.kill();
    }
  });

  it("refuses --tls with a server of one's own, saying what to use there", async () => {
    const proc = new BeamProcess(['http', String(origin.port), '--tls', '--server', 'http://127.0.0.1:1', '--json']);
    const err = await proc.waitFor('error');
    expect(err['code']).toBe('BEAM_ERR_BAD_OPTION');
    expect(String(err['message'])).toContain('--tls-cert');
    expect(await proc.exited).toBe(1);
  });
});
