/// <reference path="./ejs.d.ts" />
/**
 * Rendering the package's own EJS views and serving its static files. Paths are resolved from
 * this package, never from the host app's view settings, so mounting the admin changes nothing
 * in the host (DRIVERS.md §7).
 */
import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import ejs from 'ejs';

/** The package root: the first ancestor of this file holding views/ (source and dist alike). */
function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      if (statSync(path.join(dir, 'views', 'layout-top.ejs')).isFile()) return dir;
    } catch {
      // not here: look one level up
    }
    dir = path.dirname(dir);
  }
  throw new Error('sqljobs admin: cannot find the views/ folder of the package');
}

const root = packageRoot();
const viewsDir = path.join(root, 'views');

export function render(view: string, data: object): Promise<string> {
  return ejs.renderFile(path.join(viewsDir, `${view}.ejs`), data, { cache: true, root: viewsDir, views: [viewsDir], async: false }) as Promise<string>;
}

export interface StaticFile {
  body: Buffer;
  type: string;
  /** Part of the URL (the content's hash), so the file can be cached for a year. */
  version: string;
}

function staticFile(file: string, type: string): StaticFile {
  const body = readFileSync(file);
  return { body, type, version: createHash('sha256').update(body).digest('hex').slice(0, 12) };
}

const htmxFile = createRequire(import.meta.url).resolve('htmx.org/dist/htmx.min.js');

/** Files served under <mount>/static/<name>-<version>.<ext>. */
export const STATIC: Record<string, StaticFile> = {
  'htmx.js': staticFile(htmxFile, 'text/javascript; charset=utf-8'),
  'admin.css': staticFile(path.join(root, 'public', 'admin.css'), 'text/css; charset=utf-8'),
  'admin.js': staticFile(path.join(root, 'public', 'admin.js'), 'text/javascript; charset=utf-8'),
  'favicon.svg': staticFile(path.join(root, 'public', 'favicon.svg'), 'image/svg+xml'),
};

/** The versioned URL of a static file. */
export function staticUrl(base: string, name: keyof typeof STATIC & string): string {
  const dot = name.lastIndexOf('.');
  return `${base}/static/${name.slice(0, dot)}-${STATIC[name].version}${name.slice(dot)}`;
}

/** The static file a path names, when its version is the current one. */
export function findStatic(p: string): StaticFile | null {
  const m = /^\/static\/([a-z]+)-([0-9a-f]{12})\.(js|css|svg)$/.exec(p);
  if (!m) return null;
  const file = STATIC[`${m[1]}.${m[3]}`];
  return file && file.version === m[2] ? file : null;
}
