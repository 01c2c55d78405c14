// The uploading client of bench/pipeline.ts, in a process of its own as a remote client is: in the
// server's process its reads of each file and its socket writes ran on the server's event loop,
// between the server's own work. Forked by pipeline.ts, it says { ready } once started, takes one
// message (the server's URL, a key, the files, how many at once), posts every file, and answers with
// each upload as it is accepted ({ done: id }), then with { end: true }, or { error } on the first
// refusal.
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';

export interface UploadJob {
  url: string;
  apiKey: string;
  files: string[];
  concurrency: number;
}

export type UploadAnswer = { ready: true } | { done: string } | { end: true } | { error: string };

/** One upload with node:http (fetch would copy each body twice more). */
function post(url: string, body: Buffer, apiKey: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${apiKey}`,
        'content-type': 'application/octet-stream',
        'content-length': body.length,
      },
    });
    request.on('error', reject);
    request.on('response', (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        text += chunk;
      });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text }));
      response.on('error', reject);
    });
    request.end(body);
  });
}

async function uploadAll(job: UploadJob, answer: (a: UploadAnswer) => void): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(job.concurrency, job.files.length) }, async () => {
      while (next < job.files.length) {
        const path = job.files[next++]!;
        const response = await post(`${job.url}/v1/images`, await readFile(path), job.apiKey);
        if (response.status !== 202) throw new Error(`${path}: ${response.status} ${response.body}`);
        answer({ done: (JSON.parse(response.body) as { id: string }).id });
      }
    }),
  );
}

if (process.send) {
  // The bench's end (or its crash) ends the client too.
  process.on('disconnect', () => process.exit(0));
  process.once('message', (job: UploadJob) => {
    const answer = (a: UploadAnswer) => process.send!(a);
    uploadAll(job, answer).then(
      () => answer({ end: true }),
      (error: Error) => answer({ error: error.message }),
    );
  });
  // Started and listening: the bench starts its clock after this, not before the process starts.
  process.send({ ready: true });
}
