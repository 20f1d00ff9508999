/** A throwaway certificate authority and a wildcard certificate it signed, made with openssl, for https tests. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface TestCertificates {
  dir: string;
  /** The authority's certificate: trust it (NODE_EXTRA_CA_CERTS, `ca`). */
  caFile: string;
  certFile: string;
  keyFile: string;
  ca: Buffer;
}

const openssl = (...args: string[]): void => {
  execFileSync('openssl', args, { stdio: 'pipe' });
};

/** A new P-256 key and a self-signed certificate for `subject` (and `san`, if given), as a development server would have. */
function selfSigned(keyFile: string, certFile: string, subject: string, san?: string): void {
  openssl(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '2',
    '-subj',
    subject,
    ...(san ? ['-addext', `subjectAltName=${san}`] : []),
    '-keyout',
    keyFile,
    '-out',
    certFile,
  );
}

/** A self-signed certificate for 127.0.0.1 (no authority vouches for it): its key and certificate files. */
export function makeSelfSigned(): { certFile: string; keyFile: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'beam-self-signed-'));
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  selfSigned(keyFile, certFile, '/CN=127.0.0.1', 'IP:127.0.0.1');
  return { certFile, keyFile };
}

/** A certificate for `domain`, `*.domain` and 127.0.0.1, signed by a new authority. */
export function makeCertificates(domain: string): TestCertificates {
  const dir = mkdtempSync(path.join(tmpdir(), 'beam-tls-'));
  const at = (name: string): string => path.join(dir, name);
  selfSigned(at('ca.key'), at('ca.pem'), '/CN=Beam test CA');
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${domain}`, '-keyout', at('key.pem'), '-out', at('leaf.csr'));
  writeFileSync(at('ext.cnf'), `subjectAltName=DNS:${domain},DNS:*.${domain},IP:127.0.0.1\nextendedKeyUsage=serverAuth\n`);
  openssl(
    'x509',
    '-req',
    '-in',
    at('leaf.csr'),
    '-CA',
    at('ca.pem'),
    '-CAkey',
    at('ca.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    at('ext.cnf'),
    '-out',
    at('cert.pem'),
  );
  return { dir, caFile: at('ca.pem'), certFile: at('cert.pem'), keyFile: at('key.pem'), ca: readFileSync(at('ca.pem')) };
}
