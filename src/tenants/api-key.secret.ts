import { hash, randomBytes } from 'node:crypto';

// ck_<key id, 32 hex>_<secret, 43 base64url>
const API_KEY = /^ck_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$/;

/** A new key: its id (a UUID), the text given to its holder once, and the hash that is stored. */
export function newApiKey(): { keyId: string; apiKey: string; secretHash: Buffer } {
  const id = randomBytes(16).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { keyId: formatUuid(id), apiKey: `ck_${id}_${secret}`, secretHash: hashSecret(secret) };
}

/** The key id and the hash of the secret of a key as a caller sends it; undefined when it is not one. */
export function parseApiKey(apiKey: string): { keyId: string; secretHash: Buffer } | undefined {
  const match = API_KEY.exec(apiKey);
  if (!match) return undefined;
  return { keyId: formatUuid(match[1]!), secretHash: hashSecret(match[2]!) };
}

/** SHA-256 of the secret, one shot: every call hashes the key it presents (createHash's object cost twice as much). */
function hashSecret(secret: string): Buffer {
  return hash('sha256', secret, 'buffer');
}

function formatUuid(hex: string): string {
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
