/**
 * A preload that counts what a region sends, for the statements and round trips per request: every second
 * it appends one JSON line of running totals to ROUND_TRIPS_DIR (default /tmp)/round-trips-<pid>.jsonl —
 * HTTP answers ended, Postgres queries sent (`pg` Client.query: one round trip each; a multi-statement
 * simple query's statements counted apart) and Redis commands by name with the socket writes that carried
 * them. Used as `REGION_NODE_ARGS="--require dist/bench/round-trips.js" npm run bench -- …`: the difference
 * of two lines of the serving region's file taken under load, divided by the answers, is the cost of one.
 */
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { isMainThread } from 'node:worker_threads';

const totals = {
  at: 0,
  answers: 0,
  pgQueries: 0,
  pgStatements: 0,
  redisWrites: 0,
  redisCommands: {} as Record<string, number>,
};

const end = http.ServerResponse.prototype.end;
http.ServerResponse.prototype.end = function (this: http.ServerResponse, ...args: unknown[]) {
  totals.answers++;
  return (end as (...a: unknown[]) => http.ServerResponse).apply(this, args);
} as typeof end;

// The region's own copies of the drivers (resolved from its working directory, as its code resolves them).
const regionRequire = createRequire(path.join(process.cwd(), 'region.js'));

type Query = (this: unknown, ...args: unknown[]) => unknown;
const pg = regionRequire('pg') as { Client: { prototype: { query: Query } } };
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function (this: unknown, ...args: unknown[]) {
  const first = args[0];
  const text = typeof first === 'string' ? first : (first as { text?: unknown } | null)?.text;
  totals.pgQueries++;
  // inPipeline joins its statements with ';\n' (src/replication/pg-tx.ts).
  totals.pgStatements += typeof text === 'string' ? text.split(';\n').length : 1;
  return query.apply(this, args);
};

type SendCommand = (this: unknown, command: { name: string }, ...rest: unknown[]) => unknown;
const ioredis = regionRequire('ioredis') as { default: { prototype: { sendCommand: SendCommand } } };
const sendCommand = ioredis.default.prototype.sendCommand;
ioredis.default.prototype.sendCommand = function (this: unknown, command: { name: string }, ...rest: unknown[]) {
  totals.redisCommands[command.name] = (totals.redisCommands[command.name] ?? 0) + 1;
  return sendCommand.call(this, command, ...rest);
};

type Write = (this: net.Socket, ...args: unknown[]) => unknown;
const socket = net.Socket.prototype as unknown as { _write: Write; _writev: Write };
for (const method of ['_write', '_writev'] as const) {
  const original = socket[method];
  socket[method] = function (this: net.Socket, ...args: unknown[]) {
    if (this.remotePort === 6379) totals.redisWrites++;
    return original.apply(this, args);
  };
}

const file = path.join(process.env.ROUND_TRIPS_DIR ?? '/tmp', `round-trips-${process.pid}.jsonl`);
// The parse workers load the preload too (node passes --require on to them): only the main thread writes.
if (isMainThread) {
  setInterval(() => {
    totals.at = Date.now();
    fs.appendFileSync(file, `${JSON.stringify(totals)}\n`);
  }, 1000).unref();
}
