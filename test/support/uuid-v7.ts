/** RFC 9562's layout of a version 7 id: version nibble 7, variant bits 10. */
export const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The Unix milliseconds of a UUIDv7 (its first 48 bits). */
export const msOfUuidV7 = (id: string) => parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
