import type { DataSource } from 'typeorm';

/** Records the SQL the data source sends (every statement goes through its logger's logQuery) until stopped. */
export function recordStatements(dataSource: DataSource): { statements: string[]; stop(): void } {
  const logger = dataSource.logger;
  const original = logger.logQuery;
  const statements: string[] = [];
  logger.logQuery = function (query, parameters, queryRunner) {
    statements.push(query);
    return original.call(this, query, parameters, queryRunner);
  };
  return { statements, stop: () => void (logger.logQuery = original) };
}
