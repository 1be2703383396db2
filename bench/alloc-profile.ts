/**
 * A preload for profiling what a region allocates (not only what stays alive): starts V8's sampling heap
 * profiler with the objects garbage collection takes included, and writes the profile (Chrome DevTools'
 * .heapprofile format) into ALLOC_PROFILE_DIR (default /tmp) when the process gets SIGUSR2. Used as
 * `REGION_NODE_ARGS="--require dist/bench/alloc-profile.js" npm run bench -- …`, then `kill -USR2 <pid>`
 * once the load of interest runs; see docs/performance.md.
 */
import fs from 'node:fs';
import inspector from 'node:inspector';
import path from 'node:path';

const session = new inspector.Session();
session.connect();
session.post('HeapProfiler.enable', () =>
  session.post('HeapProfiler.startSampling', { samplingInterval: 16384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true }),
);
process.on('SIGUSR2', () => {
  session.post('HeapProfiler.stopSampling', (err, res) => {
    if (err) return void process.stderr.write(`alloc-profile: ${err.message}\n`);
    const file = path.join(process.env.ALLOC_PROFILE_DIR ?? '/tmp', `alloc-${process.pid}-${Date.now()}.heapprofile`);
    fs.writeFileSync(file, JSON.stringify(res.profile));
    process.stderr.write(`alloc-profile: wrote ${file}\n`);
    session.post('HeapProfiler.startSampling', { samplingInterval: 16384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  });
});
