/**
 * Preloaded into an operator command (`NODE_OPTIONS=--require …/not-root.cjs`): it runs as a user that is not
 * root (uid 65534, nobody) as far as the command can tell, as it would without sudo. The tests run as root on the
 * build machines, and the command's files may not be readable by another user to run it as one.
 */
process.getuid = () => 65534;
process.geteuid = () => 65534;
