/**
 * The key types of @libp2p/crypto a browser visitor never meets: Beam's
 * agents and visitors use Ed25519 keys only, so RSA, ECDSA and secp256k1
 * (and their big-number and ASN.1 code) stay out of the bundle. Anything
 * that reaches them fails loudly.
 */
const unsupported = (): never => {
  throw new Error("only Ed25519 keys are in Beam's browser bundle");
};

export class ECDSAPrivateKey {
  constructor() {
    unsupported();
  }
}
export const ECDSA_P_256_OID = '1.2.840.10045.3.1.7';
export const ECDSA_P_384_OID = '1.3.132.0.34';
export const ECDSA_P_521_OID = '1.3.132.0.35';
export const RSAES_PKCS1_V1_5_OID = '1.2.840.113549.1.1.1';
/** Lengths no raw key has, so raw keys of these types are never recognised. */
export const privateKeyLength = -1;
export const publicKeyLength = -1;
export const generateECDSAKeyPair = unsupported;
export const pkiMessageToECDSAPrivateKey = unsupported;
export const pkiMessageToECDSAPublicKey = unsupported;
export const unmarshalECDSAPrivateKey = unsupported;
export const unmarshalECDSAPublicKey = unsupported;
export const decodeDer = unsupported;
export const pkcs1ToRSAPrivateKey = unsupported;
export const pkixToRSAPublicKey = unsupported;
export const generateRSAKeyPair = unsupported;
export const pkcs1MessageToRSAPrivateKey = unsupported;
export const pkixMessageToRSAPublicKey = unsupported;
export const jwkToRSAPrivateKey = unsupported;
export const generateSecp256k1KeyPair = unsupported;
export const unmarshalSecp256k1PrivateKey = unsupported;
export const unmarshalSecp256k1PublicKey = unsupported;
