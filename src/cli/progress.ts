import cliProgress from 'cli-progress';

/** A progress bar on stderr when it is a terminal (undefined otherwise: logs get plain lines). */
export function progressBar(format: string): cliProgress.SingleBar | undefined {
  if (!process.stderr.isTTY) return undefined;
  return new cliProgress.SingleBar(
    { format, hideCursor: true, stream: process.stderr },
    cliProgress.Presets.shades_classic,
  );
}
