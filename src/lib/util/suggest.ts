// "Did you mean": the candidates a typo is close to.

/** Levenshtein distance. */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({length: b.length + 1}, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++)
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    previous = current
  }
  return previous[b.length]
}

/** The candidates within two edits of `word` (a swapped pair of letters is two), closest first. */
export function closeMatches(word: string, candidates: readonly string[]): string[] {
  return candidates.map(name => ({name, distance: editDistance(name, word)}))
    .filter(c => c.distance <= 2 && c.distance < Math.max(word.length, c.name.length))
    .sort((a, b) => a.distance - b.distance)
    .map(c => c.name)
}

/** "did you mean hash? " or nothing. */
export function didYouMean(word: string, candidates: readonly string[]): string {
  const near = closeMatches(word, candidates)
  return near.length === 0 ? '' : `did you mean ${near.join(' or ')}? `
}
