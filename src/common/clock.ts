/** What a use case asks for the current time; tests pass a fixed or moving one. */
export type Clock = () => Date;

export const systemClock: Clock = () => new Date();
