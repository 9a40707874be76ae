import type { Scope } from './api-key.entity';

/** Who is calling: resolved from the API key on every call. */
export interface Principal {
  tenantId: string;
  tenantSlug: string;
  defaultCurrency: string;
  multiCurrency: boolean;
  keyName: string;
  /** The API key's id (its revocation ends the caller's open streams). */
  keyId: string;
  scopes: ReadonlySet<Scope>;
}
