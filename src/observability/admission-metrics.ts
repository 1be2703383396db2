/** Admission control's figures (src/http/admission.ts), read from the gates when Prometheus scrapes. */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Admission } from '../http/admission';

export function registerAdmissionMetrics(registry: Registry, admission: Pick<Admission, 'gates' | 'limits'>): void {
  const gates = Object.values(admission.gates);
  const registers = [registry];
  const perGate = (name: string, help: string, read: (g: (typeof gates)[number]) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['gate'] as const,
      registers,
      collect() {
        for (const g of gates) this.set({ gate: g.name }, read(g));
      },
    });
  perGate('admission_in_flight', 'API requests holding an admission slot (in their database phase), by gate.', (g) => g.inFlight);
  perGate('admission_queued', 'API requests waiting for an admission slot, by gate.', (g) => g.queued);
  new Gauge({
    name: 'admission_limit',
    help: 'Configured admission bounds, by gate and bound (concurrency, queue; gate "all": database_slots, shared by both).',
    labelNames: ['gate', 'bound'] as const,
    registers,
    collect() {
      for (const g of gates) {
        this.set({ gate: g.name, bound: 'concurrency' }, g.limits.concurrency);
        this.set({ gate: g.name, bound: 'queue' }, g.limits.queue);
      }
      this.set({ gate: 'all', bound: 'database_slots' }, admission.limits.databaseSlots);
    },
  });
  new Counter({
    name: 'admission_admitted_total',
    help: 'API requests given an admission slot, by gate.',
    labelNames: ['gate'] as const,
    registers,
    collect() {
      this.reset();
      for (const g of gates) this.inc({ gate: g.name }, g.admitted);
    },
  });
  new Counter({
    name: 'admission_rejected_total',
    help: 'API requests answered 503 by admission control, by gate and reason (queue_full, queue_timeout).',
    labelNames: ['gate', 'reason'] as const,
    registers,
    collect() {
      this.reset();
      for (const g of gates) for (const [reason, n] of Object.entries(g.refused)) this.inc({ gate: g.name, reason }, n);
    },
  });
}
