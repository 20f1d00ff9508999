/**
 * A local certificate authority for the embedded server's https (`beam
 * --tls`), as mkcert makes one: created once under the config directory (the
 * key with mode 0600, never sent anywhere), and a fresh certificate for this
 * machine's names and LAN addresses at every start. A teammate who trusts the
 * authority once gets https, and so peer to peer in the browser (a Service
 * Worker needs a secure context), on `https://<lan address>:7070/`.
 *
 * Certificates are made with @peculiar/x509 (ECDSA P-256 over WebCrypto),
 * loaded only when --tls is asked for: it needs the reflect-metadata
 * polyfill, which should not touch a process that never uses it.
 */
import { webcrypto, X509Certificate } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { LOCAL_CA_DAYS, LOCAL_CERT_DAYS } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { configDir } from '../transport/identity.js';
import { lanAddresses } from './lan.js';

export const CA_CERT_FILE = 'beam-local-ca.pem';
const CA_KEY_FILE = 'beam-local-ca.key';
const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 24 * 60 * 60 * 1000;

export interface LocalTls {
  cert: Buffer;
  key: Buffer;
  /** The authority's certificate file, for teammates to trust. */
  caFile: string;
  /** SHA-256 fingerprint of the authority, to check the file a teammate got. */
  caFingerprint: string;
  /** The names and addresses the certificate is good for. */
  names: string[];
  /** A certificate for `<share>.localhost`, made when a client names it (SNI); undefined for any other name. */
  certFor(servername: string): Promise<{ cert: Buffer; key: Buffer }> | undefined;
}

/** `<label>.localhost`: the only names certFor signs. */
const SHARE_HOST = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.localhost$/i;

async function x509(): Promise<typeof import('@peculiar/x509')> {
  await import('reflect-metadata');
  const lib = await import('@peculiar/x509');
  lib.cryptoProvider.set(webcrypto as unknown as Crypto);
  return lib;
}

const serial = (): string => Buffer.from(webcrypto.getRandomValues(new Uint8Array(16))).toString('hex').replace(/^[89a-f]/, '7');

/** The authority under `dir` (made on first use), and a certificate for this machine signed by it. */
export async function localTls(dir = join(configDir(), 'ca')): Promise<LocalTls> {
  const lib = await x509();
  const caFile = join(dir, CA_CERT_FILE);
  const keyFile = join(dir, CA_KEY_FILE);
  let caCert: InstanceType<typeof lib.X509Certificate>;
  let caKey: CryptoKey;
  try {
    caCert = new lib.X509Certificate(await readFile(caFile, 'utf8'));
    const pem = await readFile(keyFile, 'utf8');
    caKey = await webcrypto.subtle.importKey('pkcs8', lib.PemConverter.decodeFirst(pem), ALGORITHM, false, ['sign']);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new BeamError('BEAM_ERR_CONFIG', `the local certificate authority in ${dir} is unreadable (${(err as Error).message}); move it away to make a new one`);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const keys = (await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
    caCert = await lib.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: `CN=Beam local CA (${hostname()}), O=Beam`,
      notBefore: new Date(Date.now() - DAY_MS),
      notAfter: new Date(Date.now() + LOCAL_CA_DAYS * DAY_MS),
      keys,
      signingAlgorithm: ALGORITHM,
      extensions: [
        new lib.BasicConstraintsExtension(true, 0, true),
        new lib.KeyUsagesExtension(lib.KeyUsageFlags.keyCertSign | lib.KeyUsageFlags.cRLSign, true),
        await lib.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
    await writeFile(keyFile, lib.PemConverter.encode(pkcs8, 'PRIVATE KEY'), { mode: 0o600 });
    await chmod(keyFile, 0o600);
    await writeFile(caFile, caCert.toString('pem'));
    caKey = keys.privateKey;
  }

  const ips = ['127.0.0.1', ...lanAddresses()];
  const dns = [...new Set(['localhost', hostname().toLowerCase()].filter((n) => /^[a-z0-9.-]+$/.test(n)))];
  const caPem = caCert.toString('pem');
  const authority = caCert;
  const signingKey = caKey;
  /** A certificate (and its chain) for these names, signed by the authority. */
  const issue = async (names: string[], addresses: string[]): Promise<{ cert: Buffer; key: Buffer }> => {
    const leafKeys = (await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
    const leaf = await lib.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${names[0] ?? hostname()}, O=Beam`,
      issuer: authority.subject,
      notBefore: new Date(Date.now() - DAY_MS),
      notAfter: new Date(Date.now() + LOCAL_CERT_DAYS * DAY_MS),
      signingKey,
      publicKey: leafKeys.publicKey,
      signingAlgorithm: ALGORITHM,
      extensions: [
        new lib.BasicConstraintsExtension(false, undefined, true),
        new lib.KeyUsagesExtension(lib.KeyUsageFlags.digitalSignature, true),
        new lib.ExtendedKeyUsageExtension([lib.ExtendedKeyUsage.serverAuth]),
        new lib.SubjectAlternativeNameExtension([...names.map((value) => ({ type: 'dns' as const, value })), ...addresses.map((value) => ({ type: 'ip' as const, value }))]),
        await lib.AuthorityKeyIdentifierExtension.create(authority),
      ],
    });
    const key = lib.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', leafKeys.privateKey), 'PRIVATE KEY');
    // The chain: the certificate, then the authority's.
    return { cert: Buffer.from(`${leaf.toString('pem')}\n${caPem}\n`), key: Buffer.from(key) };
  };
  const main = await issue(dns, ips);
  return {
    cert: main.cert,
    key: main.key,
    // Browsers take no wildcard right under a top-level name (*.localhost): each share's name gets its own, when asked for.
    certFor: (servername) => (SHARE_HOST.test(servername) ? issue([servername.toLowerCase()], []) : undefined),
    caFile,
    caFingerprint: new X509Certificate(caPem).fingerprint256,
    names: [...dns, ...ips],
  };
}

/** What a teammate does once to trust the authority, per platform. */
export function trustSteps(caFile: string, fingerprint: string, downloadUrl: string): string[] {
  return [
    `Teammates on your network: trust Beam's local certificate authority once (its SHA-256 fingerprint is ${fingerprint}).`,
    `  Get it: ${downloadUrl} (accept the browser's warning this one time), or send them ${caFile}.`,
    '  macOS:   security add-trusted-cert -r trustRoot -k ~/Library/Keychains/login.keychain-db beam-local-ca.pem',
    '  Windows: certutil -addstore -user Root beam-local-ca.pem',
    '  Linux:   sudo cp beam-local-ca.pem /usr/local/share/ca-certificates/beam-local-ca.crt && sudo update-ca-certificates;',
    '           Chrome/Chromium also: certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n beam -i beam-local-ca.pem',
    '  Firefox: Settings > Privacy & Security > Certificates > View Certificates > Authorities > Import',
  ];
}
