/**
 * Worker-thread entry of the metadata parse pool (parse-pool.ts): parses and validates one document per
 * message. Parsing a signed document with hundreds of elements takes xml-crypto hundreds of milliseconds;
 * here that time is this thread's, not the region's event loop.
 */
import { parentPort } from 'node:worker_threads';
import { isMetadataError } from './errors';
import { parseIdpMetadata } from './parse-metadata';

export interface ParseJob {
  id: number;
  xml: string;
  now: number;
  skewMs: number;
}

export type ParseReply =
  | { id: number; ok: true; metadata: ReturnType<typeof parseIdpMetadata> }
  | { id: number; ok: false; code: string | null; message: string };

parentPort?.on('message', (job: ParseJob) => {
  let reply: ParseReply;
  try {
    reply = { id: job.id, ok: true, metadata: parseIdpMetadata(job.xml, { now: new Date(job.now), skewMs: job.skewMs }) };
  } catch (err) {
    reply = isMetadataError(err)
      ? { id: job.id, ok: false, code: err.code, message: err.message }
      : { id: job.id, ok: false, code: null, message: err instanceof Error ? err.message : String(err) };
  }
  parentPort?.postMessage(reply);
});
