/** The `admission` block of GET /admin/replication (src/http/admission.ts, `Admission.status()`). */
import { Type } from '@sinclair/typebox';

const Count = Type.Integer({ minimum: 0 });
const strict = { additionalProperties: false } as const;

const GateStatus = Type.Object(
  {
    in_flight: Count,
    queued: Count,
    peak_queued: Count,
    admitted: Count,
    refused: Type.Object({ queue_full: Count, queue_timeout: Count }, strict),
    limits: Type.Object({ concurrency: Count, queue: Count, queue_wait_ms: Count }, strict),
  },
  strict,
);

export const AdmissionStatus = Type.Object(
  {
    writes: GateStatus,
    reads: GateStatus,
    /** The slots both kinds draw from (admission.databaseSlots). */
    database_slots: Type.Object({ in_use: Count, limit: Count }, strict),
    retry_after_seconds: Count,
  },
  { ...strict, description: 'Admission control of the API routes: requests in their database phase, queued, and answered 503.' },
);
