// Chooses the server under test: TRIPLIT_IT_SERVER=triplit runs Triplit's own (original) helper.
import * as triplite from './server-triplite.js';
import * as triplit from './server-triplit.js';

export const tempTriplitServer: typeof triplite.tempTriplitServer =
  process.env.TRIPLIT_IT_SERVER === 'triplit'
    ? (triplit.tempTriplitServer as any)
    : triplite.tempTriplitServer;
export const runServer = triplit.runServer;
