/** Bounded-concurrency runner for uploads; the first failure is kept and reported. */
export class UploadQueue {
  private running = 0;
  private readonly queue: (() => Promise<void>)[] = [];
  private readonly idleWaiters: (() => void)[] = [];
  error: unknown;
  private readonly limit: number;
  constructor(limit: number) {
    this.limit = Math.max(1, limit);
  }
  get size(): number {
    return this.running + this.queue.length;
  }
  push(task: () => Promise<void>): void {
    this.queue.push(task);
    this.pump();
  }
  private pump(): void {
    while (this.running < this.limit && this.queue.length) {
      const t = this.queue.shift()!;
      this.running++;
      t()
        .catch((e) => {
          this.error ??= e;
        })
        .finally(() => {
          this.running--;
          this.pump();
          if (this.size === 0 || this.size < this.limit * 2) for (const w of this.idleWaiters.splice(0)) w();
        });
    }
  }
  /** resolves when fewer than `n` uploads are queued or running */
  async below(n: number): Promise<void> {
    while (this.size >= n) await new Promise<void>((r) => this.idleWaiters.push(r));
  }
  async drain(): Promise<void> {
    await this.below(1);
  }
}
