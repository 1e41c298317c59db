// The request a view waits on most goes first. A run page's charts ask for their series, and
// what can wait (the tree's pages of runs, the datasets and lineage, the cards below the
// charts) waits until that answer is here, a second and a half at most: on a small machine
// the server and the browser then give the charts their time first.
let pending = null;  // { promise, settle } while a first request is coming
// A first request is coming (the one already announced, if any): returns the function that
// says it is answered, or not needed after all.
export function firstComing() {
  if (!pending) {
    let resolve;
    const promise = new Promise((r) => { resolve = r; });
    const settle = () => { resolve(); if (pending && pending.promise === promise) pending = null; };
    pending = { promise, settle };
  }
  return pending.settle;
}
// Nothing waits any more (the view is left, or could not be shown).
export const noFirst = () => { if (pending) pending.settle(); };
// Resolves once the first request is answered (at once when none is coming).
export const afterFirst = () => (pending
  ? Promise.race([pending.promise, new Promise((resolve) => setTimeout(resolve, 1500))])
  : Promise.resolve());
