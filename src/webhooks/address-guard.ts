import { type LookupAddress, lookup } from 'node:dns';
import { BlockList, isIP } from 'node:net';

/**
 * Where webhooks may not go: a customer's URL must not reach into the platform's own network
 * (server-side request forgery). Loopback, private, carrier-grade NAT, link-local (cloud metadata
 * at 169.254.169.254 and fd00:ec2::254), multicast and reserved ranges are refused, at
 * registration and again at every connection: the delivery connects to the very address checked
 * (the agents' lookup below), so a name that resolves elsewhere between the two (DNS rebinding)
 * gets nowhere. IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
 */
const REFUSED = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  REFUSED.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['64:ff9b::', 96],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const)
  REFUSED.addSubnet(net, prefix, 'ipv6');

/** Why an address is refused, or undefined when it is a public one. */
export function refusedAddress(address: string): string | undefined {
  const family = isIP(address);
  if (family === 0) return `${address} is not an IP address`;
  return REFUSED.check(address, family === 6 ? 'ipv6' : 'ipv4')
    ? `${address} is a loopback, private, link-local or reserved address`
    : undefined;
}

/** A URL's host as an address or name, without the brackets of an IPv6 literal. */
export function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

export class RefusedAddressError extends Error {
  readonly code = 'WEBHOOK_ADDRESS_REFUSED';
}

/**
 * A `lookup` for http(s).Agent: resolves as node does, then refuses the connection when any address
 * is one webhooks may not reach. The socket connects to the address returned here, never to a
 * second resolution.
 */
export function guardedLookup(
  hostname: string,
  options: { family?: number | string; all?: boolean; hints?: number },
  callback: (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
): void {
  lookup(
    hostname,
    { family: Number(options.family) || 0, hints: options.hints ?? 0, all: true },
    (error, addresses) => {
      if (error) return callback(error, []);
      for (const a of addresses) {
        const why = refusedAddress(a.address);
        if (why) return callback(new RefusedAddressError(`${hostname} resolves to ${why}`), []);
      }
      if (options.all) return callback(null, addresses);
      const first = addresses[0];
      if (!first) return callback(new RefusedAddressError(`${hostname} resolves to no address`), []);
      callback(null, first.address, first.family);
    },
  );
}

/** Resolves a host the way a delivery will and says why it is refused (undefined: allowed). */
export async function refusedHost(host: string, timeoutMs = 5000): Promise<string | undefined> {
  if (isIP(host)) return refusedAddress(host);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(`${host} did not resolve within ${timeoutMs} ms`), timeoutMs);
    guardedLookup(host, { all: true }, (error) => {
      clearTimeout(timer);
      if (!error) return resolve(undefined);
      resolve(
        error instanceof RefusedAddressError
          ? error.message
          : `${host} does not resolve (${error.code ?? error.message})`,
      );
    });
  });
}
