// mixer.js - the mixer's state: per stem a gain, mute and solo, a master
// gain, and the presets. The page turns it into one effective gain per
// stem (mute and solo applied) for the player and for the export.
//
// Design: plain data, no DOM; presets are patterns of mutes, so what a
// preset did stays visible on the mute buttons and can be changed there.

export const PRESETS = [
  { id: 'all', label: 'All stems', key: 'n', plays: () => true },
  { id: 'karaoke', label: 'Karaoke', key: 'k', needs: 'vocals', plays: (name) => name !== 'vocals' },
  { id: 'acappella', label: 'A cappella', key: 'a', needs: 'vocals', plays: (name) => name === 'vocals' },
  { id: 'drums', label: 'Drums only', key: 'd', needs: 'drums', plays: (name) => name === 'drums' },
  { id: 'bass', label: 'Bass only', key: 'b', needs: 'bass', plays: (name) => name === 'bass' },
];

export const GAIN_MAX = 2;
export const MASTER_MAX = 1.5;

export class Mixer {
  constructor(names) {
    this.stems = names.map((name) => ({ name, gain: 1, mute: false, solo: false }));
    this.master = 1;
  }

  // Gain of each stem after mute and solo (the master not included).
  effective() {
    const anySolo = this.stems.some((s) => s.solo);
    return Float32Array.from(this.stems, (s) => (s.mute || (anySolo && !s.solo) ? 0 : s.gain));
  }

  available(preset) {
    return !preset.needs || this.stems.some((s) => s.name === preset.needs);
  }

  apply(id) {
    const p = PRESETS.find((x) => x.id === id);
    if (!p || !this.available(p)) return false;
    for (const s of this.stems) {
      s.mute = !p.plays(s.name);
      s.solo = false;
    }
    return true;
  }

  // The preset whose pattern of mutes is the current one, or null.
  active() {
    if (this.stems.some((s) => s.solo)) return null;
    for (const p of PRESETS)
      if (this.available(p) && this.stems.every((s) => s.mute === !p.plays(s.name))) return p.id;
    return null;
  }
}

// A linear gain in decibels, for labels.
export function gainText(g) {
  if (g <= 0) return '−∞ dB';
  const db = 20 * Math.log10(g);
  return `${db >= 0 ? '+' : '−'}${Math.abs(db).toFixed(1)} dB`;
}
