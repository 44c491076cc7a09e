/**
 * The `k` smallest items under `compare`, sorted, in O(n log k) time and O(k) memory: a bounded max-heap, so
 * a small `limit` over a large map does not sort the whole map.
 */
export class TopK<T> {
  private readonly heap: T[] = []
  /** Items offered, whether kept or not. */
  count = 0

  constructor(
    private readonly k: number,
    private readonly compare: (a: T, b: T) => number
  ) {}

  offer(item: T): void {
    this.count++
    const heap = this.heap
    if (heap.length < this.k) {
      heap.push(item)
      this.siftUp(heap.length - 1)
    } else if (this.k > 0 && this.compare(item, heap[0]!) < 0) {
      heap[0] = item
      this.siftDown(0)
    }
  }

  /** Kept items in ascending order (consumes the heap). */
  sorted(): T[] {
    return this.heap.sort(this.compare)
  }

  private siftUp(i: number): void {
    const heap = this.heap
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (this.compare(heap[i]!, heap[parent]!) <= 0) return
      ;[heap[i], heap[parent]] = [heap[parent]!, heap[i]!]
      i = parent
    }
  }

  private siftDown(i: number): void {
    const heap = this.heap
    for (;;) {
      const left = 2 * i + 1
      const right = left + 1
      let largest = i
      if (left < heap.length && this.compare(heap[left]!, heap[largest]!) > 0) largest = left
      if (right < heap.length && this.compare(heap[right]!, heap[largest]!) > 0) largest = right
      if (largest === i) return
      ;[heap[i], heap[largest]] = [heap[largest]!, heap[i]!]
      i = largest
    }
  }
}
