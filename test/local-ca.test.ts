/**
 * The `--tls` local certificate authority is a trust root on teammates'
 * machines, so it is narrow: critical name constraints (localhost,
 * private-use names, private address ranges) that OpenSSL enforces on any
 * certificate it signs, a validity of LOCAL_CA_DAYS, and an authority made
 * by an older Beam without them is replaced.
 */

import { webcrypto, X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { CA_CERT_FILE, localTls, permitted } from '../app/local-ca.js';
import { LOCAL_CA_DAYS } from '../shared/constants.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);
const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 24 * 60 * 60 * 1000;

/** A leaf for `names` signed with the authority's own key from `dir`: what a stolen key could make. */
async function forge(dir: string, dns: string[], ips: string[] = []): Promise<{ cert: string; key: string }> {
  const ca = new x509.X509Certificate(readFileSync(path.join(dir, CA_CERT_FILE), 'utf8'));
  const signingKey = await webcrypto.subtle.importKey(
    'pkcs8',
    x509.PemConverter.decodeFirst(readFileSync(path.join(dir, 'beam-local-ca.key'), 'utf8')),
    ALGORITHM,
    false,
    ['sign'],
  );
  const keys = (await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: '01',
    subject: `CN=${dns[0] ?? ips[0]}`,
    issuer: ca.subject,
    notBefore: new Date(Date.now() - DAY_MS),
    notAfter: new Date(Date.now() + DAY_MS),
    signingKey,
    publicKey: keys.publicKey,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        ...dns.map((value) => ({ type: 'dns' as const, value })),
        ...ips.map((value) => ({ type: 'ip' as const, value })),
      ]),
    ],
  });
  return { cert: leaf.toString('pem'), key: x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY') };
}

/** Connects with TLS to a server presenting `leaf`, trusting only the authority; resolves with the verification error, if any. */
async function verify(dir: string, leaf: { cert: string; key: string }, servername: string): Promise<string | undefined> {
  const server = https.createServer({ cert: leaf.cert, key: leaf.key }, (_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  try {
    return await new Promise<string | undefined>((resolve) => {
      const socket = tls.connect(
        {
          host: '127.0.0.1',
          port: (server.address() as AddressInfo).port,
          ca: readFileSync(path.join(dir, CA_CERT_FILE)),
          servername,
          rejectUnauthorized: false,
        },
        () => {
          resolve(socket.authorized ? undefined : String(socket.authorizationError));
          socket.destroy();
        },
      );
      socket.on('error', (err: Error) => resolve(err.message));
    });
  } finally {
    server.close();
  }
}

describe('the local certificate authority', () => {
  it(`carries critical name constraints and is valid ${LOCAL_CA_DAYS} days`, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'beam-ca-'));
    await localTls(dir);
    const ca = new x509.X509Certificate(readFileSync(path.join(dir, CA_CERT_FILE), 'utf8'));
    const nc = ca.getExtension('2.5.29.30');
    expect(nc?.critical).toBe(true);
    const days = (ca.notAfter.getTime() - ca.notBefore.getTime()) / DAY_MS;
    expect(days).toBeLessThanOrEqual(LOCAL_CA_DAYS + 1);
    expect(LOCAL_CA_DAYS).toBeLessThanOrEqual(400);
  });

  it("can't sign a public name or address that OpenSSL would accept, even with its own key", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'beam-ca-'));
    await localTls(dir);
    // Inside the constraints: accepted.
    expect(await verify(dir, await forge(dir, ['app.localhost']), 'app.localhost')).toBeUndefined();
    expect(await verify(dir, await forge(dir, ['printer.local']), 'printer.local')).toBeUndefined();
    expect(await verify(dir, await forge(dir, ['dev.home.arpa'], ['192.168.1.20']), 'dev.home.arpa')).toBeUndefined();
    // Outside: refused, whatever the key signed.
    for (const name of ['example.com', 'www.bank.example', 'localhost.evil.example', 'local']) {
      const error = await verify(dir, await forge(dir, [name]), name.includes('.') ? name : 'x.invalid');
      expect(error, name).toBeDefined();
    }
    expect(await verify(dir, await forge(dir, ['app.localhost'], ['8.8.8.8']), 'app.localhost')).toBeDefined();
  });

  it('an authority made without name constraints (an older Beam) is replaced at start', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'beam-ca-'));
    mkdirSync(dir, { recursive: true });
    const keys = (await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
    const old = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: '02',
      name: 'CN=Beam local CA (old), O=Beam',
      notBefore: new Date(Date.now() - DAY_MS),
      notAfter: new Date(Date.now() + 3650 * DAY_MS),
      keys,
      signingAlgorithm: ALGORITHM,
      extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
    });
    writeFileSync(path.join(dir, CA_CERT_FILE), old.toString('pem'));
    writeFileSync(path.join(dir, 'beam-local-ca.key'), x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY'), {
      mode: 0o600,
    });
    const made = await localTls(dir);
    expect(made.caFingerprint).not.toBe(new X509Certificate(old.toString('pem')).fingerprint256);
    expect(new x509.X509Certificate(readFileSync(path.join(dir, CA_CERT_FILE), 'utf8')).getExtension('2.5.29.30')?.critical).toBe(true);
    // The next start keeps the new one.
    expect((await localTls(dir)).caFingerprint).toBe(made.caFingerprint);
  });

  it.each([
    ['localhost', true],
    ['app.localhost', true],
    ['nas.local', true],
    ['box.home.arpa', true],
    ['svc.internal', true],
    ['example.com', false],
    ['dev', false],
    ['127.0.0.1', true],
    ['192.168.1.9', true],
    ['100.101.102.103', true],
    ['203.0.113.7', false],
    ['fd00::1', true],
    ['2001:db8::1', false],
  ])('permitted(%s) is %s', (name, expected) => {
    expect(permitted(name)).toBe(expected);
  });
});
