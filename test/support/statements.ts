import type { DataSource } from 'typeorm';

/** One statement the data source sent, with its parameters. */
export interface RecordedStatement {
  sql: string;
  parameters: unknown;
}

/** Records the SQL the data source sends (every statement goes through its logger's logQuery), with its parameters, until stopped. */
export function recordStatements(dataSource: DataSource): { recorded: RecordedStatement[]; stop(): void } {
  const logger = dataSource.logger;
  const original = logger.logQuery;
  const recorded: RecordedStatement[] = [];
  logger.logQuery = function (query, parameters, queryRunner) {
    recorded.push({ sql: query, parameters: parameters ?? [] });
    return original.call(this, query, parameters, queryRunner);
  };
  return { recorded, stop: () => void (logger.logQuery = original) };
}

/** Whether a recorded statement's parameters (a JSON text one included) hold `text`. */
export function mentions(statement: RecordedStatement, text: string): boolean {
  return JSON.stringify(statement.parameters, (_, value: unknown) => (typeof value === 'bigint' ? value.toString() : value)).includes(text);
}
