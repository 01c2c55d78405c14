// End-to-end acceptance on real photographs: builds a mixed set of 50 images from the corpus
// (camera JPEGs with every EXIF orientation and GPS, phone-sized HEIC, PNG, WebP, AVIF, GIF, TIFF),
// plus broken files, uploads them to a fresh platform over HTTP and checks every outcome.
//
//   node scripts/acceptance/mixed-corpus.ts [CORPUS_DIR]
//
// Needs heif-enc and exiftool (Debian: apt-get install libheif-examples libimage-exiftool-perl)
// to make the HEIC and oriented files.
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import sharp, { type Sharp } from 'sharp';
import { loadConfig } from '../../src/config/config.ts';
import { startServer } from '../../src/server.ts';
import { pngBomb } from '../../test/fixtures/images.ts';

interface Case {
  file: string;
  format: string;
  expect: { width: number; height: number } | { code: string };
}

function need(command: string, pkg: string): void {
  try {
    execFileSync('which', [command], { stdio: 'ignore' });
  } catch {
    throw new Error(`${command} is missing: apt-get install ${pkg}`);
  }
}
need('heif-enc', 'libheif-examples');
need('exiftool', 'libimage-exiftool-perl');

const corpus =
  process.argv[2] ??
  execFileSync('bash', [new URL('../../../shared/corpus/fetch.sh', import.meta.url).pathname], {
    encoding: 'utf8',
  }).trim();
const work = await mkdtemp(join(tmpdir(), 'imagelake-accept-'));
const jpegs = (await readdir(join(corpus, 'jpeg'))).sort().map((f) => join(corpus, 'jpeg', f));
const pngs = (await readdir(join(corpus, 'png'))).sort().map((f) => join(corpus, 'png', f));
const cases: Case[] = [];

// Camera JPEGs, each of the eight EXIF orientations, with GPS.
for (let i = 0; i < 16; i++) {
  const source = jpegs[i % jpegs.length]!;
  const orientation = (i % 8) + 1;
  const file = join(work, `camera-${i}-o${orientation}.jpg`);
  await writeFile(file, await readFile(source));
  execFileSync('exiftool', [
    '-m',
    '-q',
    '-overwrite_original',
    '-n',
    `-Orientation=${orientation}`,
    '-Make=Canon',
    '-Model=EOS R6',
    '-GPSLatitude=48.8584',
    '-GPSLatitudeRef=N',
    '-GPSLongitude=2.2945',
    '-GPSLongitudeRef=E',
    file,
  ]);
  const m = await sharp(file).metadata();
  const swap = orientation >= 5;
  cases.push({
    file,
    format: 'jpeg',
    expect: { width: swap ? m.height! : m.width!, height: swap ? m.width! : m.height! },
  });
}
// Phone HEIC at a phone's resolution, with EXIF and GPS.
for (let i = 0; i < 8; i++) {
  const staged = join(work, `phone-${i}.jpg`);
  await sharp(jpegs[(i * 3 + 1) % jpegs.length]!)
    .resize(4032, 3024, { fit: 'cover' })
    .jpeg({ quality: 90 })
    .withExif({
      IFD0: { Make: 'Apple', Model: 'iPhone 15 Pro' },
      IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '1/1 17/1 0/1' },
    })
    .toFile(staged);
  const file = join(work, `phone-${i}.heic`);
  execFileSync('heif-enc', ['-q', '50', staged, '-o', file], { stdio: 'ignore' });
  await rm(staged);
  cases.push({ file, format: 'heic', expect: { width: 4032, height: 3024 } });
}
for (let i = 0; i < 12; i++) {
  const source = pngs[i % pngs.length]!;
  const m = await sharp(source).metadata();
  cases.push({ file: source, format: 'png', expect: { width: m.width!, height: m.height! } });
}
// Web formats made from the photographs.
const derived: Array<[string, (s: Sharp) => Sharp, number]> = [
  ['webp', (s) => s.webp({ quality: 80 }), 5],
  ['avif', (s) => s.avif({ quality: 50, effort: 0 }), 3],
  ['gif', (s) => s.gif(), 3],
  ['tiff', (s) => s.tiff({ compression: 'lzw' }), 3],
];
let n = 0;
for (const [format, encode, count] of derived) {
  for (let i = 0; i < count; i++) {
    const file = join(work, `web-${n}.${format}`);
    const info = await encode(
      sharp(jpegs[(n * 5 + 2) % jpegs.length]!).resize(1600, 1600, { fit: 'inside' }),
    ).toFile(file);
    cases.push({ file, format, expect: { width: info.width, height: info.height } });
    n++;
  }
}
const good = cases.length;
// What must fail, each with its code.
const whole = await readFile(jpegs[0]!);
const broken: Array<[string, Buffer, string]> = [
  ['truncated.jpg', whole.subarray(0, Math.floor(whole.length / 3)), 'CORRUPT_IMAGE'],
  [
    'corrupt.png',
    Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), Buffer.alloc(4000, 0x41)]),
    'CORRUPT_IMAGE',
  ],
  ['empty.jpg', Buffer.alloc(0), 'EMPTY_BODY'],
  ['notes.jpg', Buffer.from('this is a text file named like a photo'), 'UNSUPPORTED_FORMAT'],
  [
    'vector.svg',
    Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>'),
    'UNSUPPORTED_FORMAT',
  ],
];
broken.push(['bomb.png', pngBomb(), 'TOO_MANY_PIXELS']);
for (const [name, bytes, code] of broken) {
  const file = join(work, name);
  await writeFile(file, bytes);
  cases.push({ file, format: '-', expect: { code } });
}
console.log(`${good} images to process and ${broken.length} broken files, in ${work}`);

const dataDir = join(work, 'data');
const admin = 'il_admin_acceptance';
const server = await startServer(
  loadConfig({ IMAGELAKE_DATA_DIR: dataDir, IMAGELAKE_PORT: '0', IMAGELAKE_ADMIN_TOKEN: admin }),
  { log: pino({ level: 'warn' }) },
);
const url = server.url!;
let failures = 0;
const check = (ok: boolean, what: string) => {
  if (!ok) {
    failures++;
    console.log(`FAIL ${what}`);
  }
};
try {
  const customer = (await (
    await fetch(`${url}/v1/customers`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: '{"name":"Acceptance"}',
    })
  ).json()) as { id: string; apiKey: string };
  const auth = { authorization: `Bearer ${customer.apiKey}` };
  const started = performance.now();
  const landed = await Promise.all(
    cases.map(async (c) => {
      const r = await fetch(`${url}/v1/images`, {
        method: 'POST',
        headers: auth,
        body: new Uint8Array(await readFile(c.file)),
      });
      return { c, status: r.status, body: (await r.json()) as { id?: string; error?: { code: string } } };
    }),
  );
  const byFormat: Record<string, number> = {};
  for (const { c, status, body } of landed) {
    const name = c.file.split('/').pop();
    if (status !== 202) {
      check(
        'code' in c.expect && body.error?.code === c.expect.code,
        `${name}: refused ${status} ${body.error?.code}, expected ${JSON.stringify(c.expect)}`,
      );
      continue;
    }
    let image: {
      status: string;
      format: string;
      width: number;
      height: number;
      error?: { code: string };
      renditions: Array<{ name: string; url: string }>;
    };
    for (;;) {
      image = (await (await fetch(`${url}/v1/images/${body.id}`, { headers: auth })).json()) as typeof image;
      if (image.status === 'processed' || image.status === 'failed') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    if ('code' in c.expect) {
      check(
        image.status === 'failed' && image.error?.code === c.expect.code,
        `${name}: ${image.status} ${image.error?.code}, expected ${c.expect.code}`,
      );
      continue;
    }
    check(image.status === 'processed', `${name}: ${image.status} ${JSON.stringify(image.error)}`);
    check(image.format === c.format, `${name}: format ${image.format}, expected ${c.format}`);
    check(
      image.width === c.expect.width && image.height === c.expect.height,
      `${name}: ${image.width}x${image.height}, expected ${c.expect.width}x${c.expect.height}`,
    );
    byFormat[image.format] = (byFormat[image.format] ?? 0) + 1;
    for (const r of image.renditions) {
      const bytes = Buffer.from(await (await fetch(`${url}${r.url}`, { headers: auth })).arrayBuffer());
      const meta = await sharp(bytes).metadata();
      check(meta.exif === undefined && meta.xmp === undefined, `${name} ${r.name}: carries metadata`);
      const uprightLandscape = c.expect.width >= c.expect.height;
      check(
        meta.width! >= meta.height! === uprightLandscape || Math.abs(meta.width! - meta.height!) <= 1,
        `${name} ${r.name}: ${meta.width}x${meta.height} is not upright`,
      );
    }
  }
  const seconds = (performance.now() - started) / 1000;
  const today = new Date().toISOString().slice(0, 10);
  const stats = (await (
    await fetch(`${url}/v1/stats?from=${today}&to=${today}&groupBy=format,status`, {
      headers: { authorization: `Bearer ${admin}` },
    })
  ).json()) as { rows: Array<{ format: string; status: string; images: number }> };
  for (const [format, count] of Object.entries(byFormat)) {
    const row = stats.rows.find((r) => r.format === format && r.status === 'processed');
    check(row?.images === count, `stats: ${format} processed ${row?.images}, uploaded ${count}`);
  }
  console.table(stats.rows);
  console.log(
    `${cases.length} files in ${seconds.toFixed(1)} s; ${failures === 0 ? 'every check passed' : `${failures} checks FAILED`}`,
  );
} finally {
  await server.stop();
  await rm(work, { recursive: true, force: true });
}
process.exitCode = failures ? 1 : 0;
