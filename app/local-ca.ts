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
 *
 * Teammates install the authority as a trust root, so it is kept narrow:
 * critical NameConstraints (RFC 5280 section 4.2.1.10) let it sign only
 * localhost and the private-use names below, and the private and loopback
 * address ranges; it is valid LOCAL_CA_DAYS. Even a stolen key can't then
 * sign a certificate browsers accept for any public site. An authority made
 * without them (by an older Beam), or near its end, is replaced at start.
 */
import { webcrypto, X509Certificate } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { BlockList, isIP } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { LOCAL_CA_DAYS, LOCAL_CERT_DAYS } from '../shared/constants.js';
import { BeamError } from '../shared/errors.js';
import { configDir } from '../transport/config-dir.js';
import { lanAddresses } from './lan.js';

export const CA_CERT_FILE = 'beam-local-ca.pem';
const CA_KEY_FILE = 'beam-local-ca.key';
const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 24 * 60 * 60 * 1000;

/** DNS names the authority may sign, each with every name below it: localhost and private-use domains (RFC 6761, 6762, 8375, and ICANN's .internal). */
export const PERMITTED_DNS = ['localhost', 'local', 'home.arpa', 'internal'] as const;
/** Address ranges the authority may sign: loopback, RFC 1918, shared address space (RFC 6598, CGNAT and tailnets), IPv6 unique local and link-local. */
export const PERMITTED_RANGES = ['127.0.0.0/8', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '::1/128', 'fc00::/7', 'fe80::/10'] as const;
const NAME_CONSTRAINTS_OID = '2.5.29.30';

const permittedAddresses = new BlockList();
for (const range of PERMITTED_RANGES) {
  const [address, prefix] = range.split('/') as [string, string];
  permittedAddresses.addSubnet(address, Number(prefix), isIP(address) === 6 ? 'ipv6' : 'ipv4');
}

/** Whether the authority may sign this DNS name or address. */
export function permitted(name: string): boolean {
  const family = isIP(name);
  if (family !== 0) return permittedAddresses.check(name, family === 6 ? 'ipv6' : 'ipv4');
  const lower = name.toLowerCase();
  return PERMITTED_DNS.some((d) => lower === d || lower.endsWith(`.${d}`));
}

/** The NameConstraints extension's DER value: permitted subtrees only. */
async function nameConstraints(): Promise<ArrayBuffer> {
  const asn = await import('@peculiar/asn1-x509');
  const { AsnConvert } = await import('@peculiar/asn1-schema');
  const subtrees = [
    ...PERMITTED_DNS.map((dNSName) => new asn.GeneralSubtree({ base: new asn.GeneralName({ dNSName }) })),
    ...PERMITTED_RANGES.map((iPAddress) => new asn.GeneralSubtree({ base: new asn.GeneralName({ iPAddress }) })),
  ];
  return AsnConvert.serialize(new asn.NameConstraints({ permittedSubtrees: new asn.GeneralSubtrees(subtrees) }));
}

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

/** `<label>.localhost`, and `<label>.local` (a share announced by mDNS, --lan): the only names certFor signs. */
const SHARE_HOST = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.(?:localhost|local)$/i;

async function x509(): Promise<typeof import('@peculiar/x509')> {
  await import('reflect-metadata');
  const lib = await import('@peculiar/x509');
  lib.cryptoProvider.set(webcrypto as unknown as Crypto);
  return lib;
}

const serial = (): string =>
  Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)))
    .toString('hex')
    .replace(/^[89a-f]/, '7');

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
    // One without name constraints (an older Beam's), or too near its end to sign a leaf: made anew below.
    if (!caCert.getExtension(NAME_CONSTRAINTS_OID) || caCert.notAfter.getTime() < Date.now() + LOCAL_CERT_DAYS * DAY_MS) {
      throw Object.assign(new Error('replaced'), { code: 'ENOENT' });
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new BeamError(
        'BEAM_ERR_CONFIG',
        `the local certificate authority in ${dir} is unreadable (${(err as Error).message}); move it away to make a new one`,
      );
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
        new lib.Extension(NAME_CONSTRAINTS_OID, true, await nameConstraints()),
        await lib.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
    await writeFile(keyFile, lib.PemConverter.encode(pkcs8, 'PRIVATE KEY'), { mode: 0o600 });
    await chmod(keyFile, 0o600);
    await writeFile(caFile, caCert.toString('pem'));
    caKey = keys.privateKey;
  }

  // Only what the authority may sign: a public LAN address or a host name outside PERMITTED_DNS is left out.
  const ips = ['127.0.0.1', ...lanAddresses()].filter(permitted);
  const dns = [...new Set(['localhost', hostname().toLowerCase()].filter((n) => /^[a-z0-9.-]+$/.test(n) && permitted(n)))];
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
        new lib.SubjectAlternativeNameExtension([
          ...names.map((value) => ({ type: 'dns' as const, value })),
          ...addresses.map((value) => ({ type: 'ip' as const, value })),
        ]),
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
    '  It can vouch only for localhost, .local/.internal/home.arpa names and private addresses (name constraints), for a year.',
    '  macOS:   security add-trusted-cert -r trustRoot -k ~/Library/Keychains/login.keychain-db beam-local-ca.pem',
    '  Windows: certutil -addstore -user Root beam-local-ca.pem',
    '  Linux:   sudo cp beam-local-ca.pem /usr/local/share/ca-certificates/beam-local-ca.crt && sudo update-ca-certificates;',
    '           Chrome/Chromium also: certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n beam -i beam-local-ca.pem',
    '  Firefox: Settings > Privacy & Security > Certificates > View Certificates > Authorities > Import',
  ];
}
