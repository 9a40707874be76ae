import type { ValueTransformer } from 'typeorm';

/** pg returns int8 as a string; money must stay exact, so map it to bigint. */
export const bigintColumn: ValueTransformer = {
  to: (value: bigint | null | undefined) => (value === null || value === undefined ? value : value.toString()),
  from: (value: string | null) => (value === null ? null : BigInt(value)),
};
