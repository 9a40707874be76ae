import { Violations } from '../common/domain-error';
import { checkPageSize } from '../common/pager';
import { checkCustomerId } from '../common/text';
import type { EventCursorCodec, Position } from './event-cursor';
import type { EventFilter } from './event.repository';
import type { EventType } from './outbox';

/** What ListEvents and StreamEvents share; enum values as the mapper read them (undefined: unspecified). */
export interface EventQueryInput {
  afterCursor: string;
  types: ReadonlyArray<EventType | 'UNRECOGNIZED' | undefined>;
  customerId: string;
}

export interface EventQuery {
  /** Undefined: from the beginning of what is retained. */
  after: Position | undefined;
  filter: EventFilter;
}

/** Checks the cursor (the tenant `tenantId`'s) and filters, adding every problem to `v`. */
export function checkEventQuery(v: Violations, codec: EventCursorCodec, tenantId: string, input: EventQueryInput): EventQuery {
  const after = codec.decode(tenantId, input.afterCursor);
  if (after === 'malformed') {
    v.add('after_cursor', "is not a cursor this service issued to this tenant (send an Event.cursor or a next_cursor of this tenant's events as it was given)");
  }
  const types: EventType[] = [];
  input.types.forEach((type, i) => {
    if (type === undefined || type === 'UNRECOGNIZED') v.add(`types[${i}]`, type === undefined ? 'must be an event type other than EVENT_TYPE_UNSPECIFIED' : 'must be one of the EventType values this service knows (an unknown number was sent)');
    else if (!types.includes(type)) types.push(type);
  });
  if (input.customerId !== '') checkCustomerId(v, 'customer_id', input.customerId);
  return {
    after: after === 'malformed' ? undefined : after,
    filter: { types: types.length > 0 ? types : undefined, customerId: input.customerId === '' ? undefined : input.customerId },
  };
}

export function checkListEvents(codec: EventCursorCodec, tenantId: string, input: EventQueryInput & { pageSize: number }): EventQuery {
  const v = new Violations();
  checkPageSize(v, input.pageSize);
  const query = checkEventQuery(v, codec, tenantId, input);
  v.throwIfAny();
  return query;
}

export function checkStreamEvents(codec: EventCursorCodec, tenantId: string, input: EventQueryInput & { liveOnly: boolean }): EventQuery {
  const v = new Violations();
  const query = checkEventQuery(v, codec, tenantId, input);
  if (input.liveOnly && input.afterCursor !== '') v.add('live_only', 'must be false when after_cursor is given (the stream then starts after that cursor)');
  v.throwIfAny();
  return query;
}
