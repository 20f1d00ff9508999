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

/** A certificate for `domain`, `*.domain` and 127.0.0.1, signed by a new authority. */
export function makeCertificates(domain: string): TestCertificates {
  const dir = mkdtempSync(path.join(tmpdir(), 'beam-tls-'));
  const at = (name: string): string => path.join(dir, name);
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { stdio: 'pipe' });
  };
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
    '/CN=Beam test CA',
    '-keyout',
    at('ca.key'),
    '-out',
    at('ca.pem'),
  );
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
