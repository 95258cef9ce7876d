/**
 * The commit gate on a raw response: the first time it is about to go out (writeHead, write,
 * end, flushHeaders — Express's res.send, res.json, res.redirect, streams, and a Koa handler's own
 * writes with ctx.respond = false all end up there) the gate holds that call, commits when the
 * handler succeeded (status < 400 by default) or rolls back otherwise, and then lets the response
 * through. A failed commit turns it into a 500: the client never sees a 2xx for work that did not
 * commit. A client that disconnects first rolls back.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { clientGone } from './unit-of-work.ts';
import { callApp } from '../report.ts';

type Gated = 'writeHead' | 'write' | 'end' | 'flushHeaders';
const GATED: Gated[] = ['writeHead', 'write', 'end', 'flushHeaders'];

export function installGate(
  req: IncomingMessage,
  res: ServerResponse,
  uow: { commit(): Promise<void>; rollback(): Promise<void>; readonly decided: boolean },
  shouldCommit: () => boolean,
  onCommitError?: (err: unknown) => void,
): void {
  const original = new Map<Gated, (...args: unknown[]) => unknown>();
  for (const name of GATED) original.set(name, (res as unknown as Record<Gated, (...a: unknown[]) => unknown>)[name]);
  const held: [Gated, unknown[]][] = [];
  let state: 'open' | 'settling' | 'done' = 'open';

  const restore = () => {
    for (const [name, fn] of original) (res as unknown as Record<string, unknown>)[name] = fn;
  };
  const settle = async () => {
    let failed: unknown = null;
    try {
      // commitWhen is the app's code: if it throws, nothing is committed and the answer is a 500.
      // Decided already (Koa's middleware committed before Koa's own response): asked once only.
      if (!uow.decided) {
        if (shouldCommit()) await uow.commit();
        else await uow.rollback();
      }
    } catch (err) {
      failed = err;
      await uow.rollback();
    }
    restore();
    state = 'done';
    // Heard also when the client has gone meanwhile: the jobs are lost all the same.
    // The app's error hook failing (a throw, a rejection) changes nothing: the client still gets its 500.
    if (failed && onCommitError) callApp(() => onCommitError(failed));
    if (res.destroyed) return;
    if (failed) {
      if (res.headersSent) return void res.destroy(failed as Error);
      for (const h of res.getHeaderNames()) res.removeHeader(h);
      res.statusCode = 500;
      res.setHeader('content-type', 'application/json; charset=utf-8');
      return void res.end(JSON.stringify({ error: 'the request could not be committed' }));
    }
    // The held calls are the app's own: one may throw now (an invalid status code or header).
    // Its connection is ended rather than left hanging, and nothing escapes the gate.
    try {
      for (const [name, args] of held) original.get(name)!.apply(res, args);
    } catch {
      res.destroy();
    }
  };

  for (const name of GATED) {
    (res as unknown as Record<string, unknown>)[name] = function gated(...args: unknown[]) {
      held.push([name, args]);
      // A raw writeHead(201, …) decides the status the commit is judged by (it is held meanwhile).
      if (state === 'open' && name === 'writeHead' && typeof args[0] === 'number') res.statusCode = args[0];
      if (state === 'open') {
        state = 'settling';
        settle().catch(() => res.destroy());
      }
      return name === 'write' ? true : res;
    };
  }
  // A client that went away before the response (also before this first use): roll back and release the connection.
  const onClose = () => {
    if (state === 'open') {
      state = 'done';
      restore();
      void uow.rollback();
    }
  };
  if (clientGone(res)) onClose();
  else res.once('close', onClose);
}
