/** Ends a command that was used wrongly: the message on stderr, exit code 2. */
export function fail(message: string): never {
  console.error(`imagelake: ${message}`);
  process.exit(2);
}
