// The schema `triplit schema push` sends to the server under test (Clerk-style roles: the
// user id is the token's `sub`).
import { Schema as S } from '@triplit/client';

export const roles = {
  user: { match: { sub: '$userId' } },
};

const own = { filter: [['owner', '=', '$role.userId']] };

export const schema = S.Collections({
  projects: {
    schema: S.Schema({ id: S.Id(), name: S.String(), owner: S.String() }),
    relationships: {
      todos: S.RelationMany('todos', { where: [['project_id', '=', '$id']] }),
    },
    permissions: {
      user: { read: { filter: [true] }, insert: own, update: own, delete: own },
    },
  },
  todos: {
    schema: S.Schema({
      id: S.Id(),
      text: S.String(),
      completed: S.Boolean({ default: false }),
      owner: S.String(),
      project_id: S.Optional(S.String()),
    }),
    relationships: {
      project: S.RelationById('projects', '$project_id'),
    },
    permissions: {
      user: { read: own, insert: own, update: own, postUpdate: own, delete: own },
    },
  },
});
