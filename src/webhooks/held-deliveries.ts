import type { ClaimedDelivery, Held } from '../catalog/webhook-deliveries.ts';

/** A claimed delivery waiting for a slot, and until when (this process's clock) its endpoint's lease holds. */
interface Waiting {
  delivery: ClaimedDelivery;
  leaseEnds: number;
}

/**
 * What one dispatcher holds, by endpoint: deliveries waiting for a slot, sends in flight, and
 * attempts answered but not yet recorded (the next claim must not read them again). The dispatcher
 * asks it which delivery goes next (endpoints in turn, at most `perEndpoint` in flight to each) and
 * whether an endpoint has sent enough of its claimed rounds (waiting or in flight) to claim the next
 * ones.
 */
export class HeldDeliveries {
  /** Waiting, by endpoint; the map's order is the turn's order. */
  private readonly waiting = new Map<string, Waiting[]>();
  private readonly sending = new Map<string, number>();
  /** Every delivery held, to its endpoint. */
  private readonly ids = new Map<string, string>();
  private waitingTotal = 0;
  private sendingTotal = 0;

  get inFlight(): number {
    return this.sendingTotal;
  }

  /**
   * Waiting or in flight, all endpoints together: what claims top up (answered ones are only being
   * recorded).
   */
  get pending(): number {
    return this.waitingTotal + this.sendingTotal;
  }

  /** Waiting or in flight for one endpoint. */
  pendingFor(endpointId: string): number {
    return (this.waiting.get(endpointId)?.length ?? 0) + (this.sending.get(endpointId) ?? 0);
  }

  add(claimed: ClaimedDelivery[], leaseEnds: number): void {
    for (const delivery of claimed) {
      const id = delivery.endpointId;
      const queue = this.waiting.get(id);
      if (queue) queue.push({ delivery, leaseEnds });
      else this.waiting.set(id, [{ delivery, leaseEnds }]);
      this.ids.set(delivery.id, id);
    }
    this.waitingTotal += claimed.length;
  }

  /**
   * The next deliveries to send, one per endpoint in turn, until `slots` are filled or every
   * endpoint with waiting deliveries has `perEndpoint` in flight. Those whose lease ends before
   * `mustLastUntil` are returned apart, to be let go rather than sent.
   */
  take(
    slots: number,
    perEndpoint: number,
    mustLastUntil: number,
  ): { send: ClaimedDelivery[]; expired: ClaimedDelivery[] } {
    const send: ClaimedDelivery[] = [];
    const expired: ClaimedDelivery[] = [];
    let progressed = true;
    while (progressed && send.length < slots && this.waitingTotal > 0) {
      progressed = false;
      for (const [id, queue] of this.waiting) {
        if (send.length >= slots) break;
        if ((this.sending.get(id) ?? 0) >= perEndpoint) continue;
        const next = queue.shift()!;
        this.waitingTotal--;
        // The endpoint goes to the back of the turn; an empty queue leaves it.
        this.waiting.delete(id);
        if (queue.length > 0) this.waiting.set(id, queue);
        progressed = true;
        if (next.leaseEnds < mustLastUntil) {
          expired.push(next.delivery);
          this.ended(next.delivery);
        } else {
          send.push(next.delivery);
          bump(this.sending, id, 1);
          this.sendingTotal++;
        }
      }
    }
    return { send, expired };
  }

  /** The receiver answered (or the attempt ended without an answer): its slot is free. */
  answered(delivery: ClaimedDelivery): void {
    bump(this.sending, delivery.endpointId, -1);
    this.sendingTotal--;
  }

  /** Held no more: the attempt is recorded (or was not, the endpoint being lost), or it was let go. */
  ended(delivery: ClaimedDelivery): void {
    this.ids.delete(delivery.id);
  }

  /**
   * What the next claim skips (every delivery held, by endpoint), and how many each endpoint has
   * waiting or in flight.
   */
  snapshot(): Held {
    const byEndpoint = new Map<string, number>();
    for (const id of new Set([...this.waiting.keys(), ...this.sending.keys()]))
      byEndpoint.set(id, this.pendingFor(id));
    const ids = new Map<string, string[]>();
    for (const [delivery, endpoint] of this.ids) {
      const list = ids.get(endpoint);
      if (list) list.push(delivery);
      else ids.set(endpoint, [delivery]);
    }
    return { ids, byEndpoint };
  }

  /** Takes every waiting delivery out (the dispatcher is stopping: they are let go unsent). */
  drain(): ClaimedDelivery[] {
    const all = [...this.waiting.values()].flat().map((w) => w.delivery);
    this.waiting.clear();
    this.waitingTotal = 0;
    for (const delivery of all) this.ended(delivery);
    return all;
  }
}

function bump(counts: Map<string, number>, key: string, by: number): void {
  const value = (counts.get(key) ?? 0) + by;
  if (value > 0) counts.set(key, value);
  else counts.delete(key);
}
