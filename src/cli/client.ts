/** A small client of the HTTP API for the CLI: base URL, a key, and errors that say what to do. */
export class ApiClient {
  readonly baseUrl: string;
  readonly key: string | undefined;

  constructor(baseUrl: string, key: string | undefined) {
    this.baseUrl = baseUrl.replace(/\/$/, '');
    this.key = key;
  }

  async request(
    method: string,
    path: string,
    init: { body?: BodyInit; headers?: Record<string, string>; json?: unknown } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { ...init.headers };
    if (this.key) headers.authorization = `Bearer ${this.key}`;
    let body = init.body;
    if (init.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(init.json);
    }
    try {
      return await fetch(`${this.baseUrl}${path}`, { method, headers, body });
    } catch (error) {
      throw new Error(
        `Cannot reach imagelake at ${this.baseUrl} (${(error as Error).cause ?? (error as Error).message}). Is it running? Set --url or IMAGELAKE_URL.`,
      );
    }
  }

  async json<T>(method: string, path: string, json?: unknown): Promise<T> {
    const response = await this.request(method, path, json === undefined ? {} : { json });
    const text = await response.text();
    const body = text ? JSON.parse(text) : undefined;
    if (!response.ok) {
      const error = body?.error ?? { code: `HTTP_${response.status}`, message: text };
      throw new Error(`${error.code}: ${error.message}`);
    }
    return body as T;
  }
}
