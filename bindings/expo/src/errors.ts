/** The C ABI's `triplite_status` values (stable: never renumbered). */
export const Status = {
  OK: 0,
  MISUSE: 1,
  INVALID_JSON: 2,
  SCHEMA: 3,
  NOT_FOUND: 4,
  PERMISSION: 5,
  AUTH: 6,
  QUERY: 7,
  STORAGE: 8,
  NETWORK: 9,
  INTERNAL: 10,
  PANIC: 11,
} as const;

export type StatusName = keyof typeof Status;

const CAUSED_BY = 'Caused by:';

/**
 * A call the library refused: `status` is the C ABI's status (see `Status`), `name` Triplit's
 * error name (`WritePermissionError`, `CollectionNotFoundError`, ...; the status's name when
 * the library gives none), `message` the explanation.
 */
export class TripliteError extends Error {
  constructor(
    readonly status: number,
    override readonly name: string,
    message: string,
  ) {
    super(message);
  }

  /** The error of a status's name (`"PERMISSION"`) and the library's `"<Name>Error: <message>"`. */
  static of(statusName: string, text: string): TripliteError {
    const status = (Status as Record<string, number>)[statusName] ?? Status.INTERNAL;
    const named = /^([A-Za-z]+Error): ([\s\S]*)$/.exec(text);
    return named ? new TripliteError(status, named[1], named[2]) : new TripliteError(status, statusName, text);
  }

  /**
   * A native module's rejection (`code` `"TRIPLITE_<STATUS>"`, `message` the library's text).
   * Expo wraps a native function's failure (`Call to function '...' has been rejected.\n→
   * Caused by: <text>`): the library's text is what follows the last "Caused by".
   */
  static from(error: unknown): unknown {
    if (error instanceof TripliteError) return error;
    const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
    if (typeof code === 'string' && code.startsWith('TRIPLITE_') && typeof message === 'string') {
      const cause = message.lastIndexOf(CAUSED_BY);
      const text = cause === -1 ? message : message.slice(cause + CAUSED_BY.length);
      return TripliteError.of(code.slice('TRIPLITE_'.length), text.trim());
    }
    return error;
  }

  /** An error as the library's events carry it: `{name, message, status}` (HTTP status). */
  static fromWire(error: unknown): TripliteError {
    const { name, message } = (error ?? {}) as { name?: unknown; message?: unknown };
    return new TripliteError(Status.QUERY, typeof name === 'string' ? name : 'QueryError', typeof message === 'string' ? message : '');
  }
}
