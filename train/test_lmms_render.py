"""Tests of the LMMS project reader and the track grouping rules of
lmms_render.py.

Run: python3 -m unittest discover -s train -p 'test_lmms*.py'
(standard library only; needs neither lmms nor the demo projects).
"""
import os
import struct
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lmms_render as L  # noqa: E402

# A small project: two song-editor instruments, a beat/bassline track
# whose container holds a kick and a hi-hat, a muted track, an automation
# track, and FX channels "Lows" (sending to "Bass bus") and "FX 3".
PROJECT = """<?xml version="1.0"?>
<multimedia-project version="1.0" type="song">
 <head bpm="120" timesig_numerator="4" timesig_denominator="4"/>
 <song>
  <trackcontainer type="song">
   <track type="0" name="Default preset" muted="0" solo="1">
    <instrumenttrack fxch="1" basenote="57">
     <instrument name="zynaddsubfx"><zynaddsubfx/></instrument>
    </instrumenttrack>
    <pattern pos="0"><note pos="0" len="48" key="30"/>
     <note pos="48" len="48" key="32"/></pattern>
   </track>
   <track type="0" name="Lead" muted="0">
    <instrumenttrack fxch="3" basenote="57">
     <instrument name="tripleoscillator">
      <tripleoscillator vol0="30" coarse0="0" vol1="30" coarse1="-24"
                        vol2="0" coarse2="-36"/></instrument>
    </instrumenttrack>
    <pattern pos="0"><note pos="0" len="48" key="57"/></pattern>
   </track>
   <track type="1" name="Beat">
    <bbtrack><trackcontainer type="bbtrackcontainer">
     <track type="0" name="kick01.ogg" muted="0">
      <instrumenttrack fxch="0" basenote="57">
       <instrument name="audiofileprocessor">
        <audiofileprocessor src="drums/kick01.ogg"/></instrument>
      </instrumenttrack>
      <pattern pos="0"><note pos="0" len="-192" key="57"/></pattern>
     </track>
     <track type="0" name="hat" muted="0">
      <instrumenttrack fxch="0" basenote="57">
       <instrument name="audiofileprocessor">
        <audiofileprocessor src="drums/hihat_closed01.ogg"/></instrument>
      </instrumenttrack>
      <pattern pos="0"><note pos="0" len="-192" key="57"/></pattern>
     </track>
    </trackcontainer></bbtrack>
   </track>
   <track type="0" name="Pad" muted="1">
    <instrumenttrack fxch="0" basenote="57">
     <instrument name="tripleoscillator"><tripleoscillator/></instrument>
    </instrumenttrack>
    <pattern pos="0"><note pos="0" len="48" key="60"/></pattern>
   </track>
   <track type="5" name="Automation track"/>
  </trackcontainer>
  <fxmixer>
   <fxchannel num="0" name="Master"/>
   <fxchannel num="1" name="Lows"><send channel="2" amount="1"/></fxchannel>
   <fxchannel num="2" name="Bass bus"><send channel="0" amount="1"/></fxchannel>
   <fxchannel num="3" name="FX 3"><send channel="0" amount="1"/></fxchannel>
  </fxmixer>
 </song>
</multimedia-project>
"""


def facts(**kw):
    f = {"where": "song", "name": "", "plugin": "zynaddsubfx", "sample": "",
         "fx": [], "notes": 10, "pitch": {"median": 72, "p90": 80},
         "muted": False}
    f.update(kw)
    return f


class ProjectTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        data = PROJECT.encode()
        self.mmp = os.path.join(self.dir.name, "p.mmp")
        with open(self.mmp, "wb") as f:
            f.write(data)
        # .mmpz: Qt's qCompress, a big-endian length then a zlib stream
        self.mmpz = os.path.join(self.dir.name, "p.mmpz")
        with open(self.mmpz, "wb") as f:
            f.write(struct.pack(">I", len(data)) + zlib.compress(data))

    def tearDown(self):
        self.dir.cleanup()

    def test_reads_compressed_and_plain_projects_alike(self):
        a = ET.tostring(L.read_project(self.mmp).getroot())
        b = ET.tostring(L.read_project(self.mmpz).getroot())
        self.assertEqual(a, b)

    def test_playable_tracks_include_beat_bassline_instruments(self):
        root = L.read_project(self.mmp).getroot()
        got = [(w, t.get("name")) for w, t in L.playable_tracks(root)]
        self.assertEqual(got, [("song", "Default preset"), ("song", "Lead"),
                               ("bb", "kick01.ogg"), ("bb", "hat"),
                               ("song", "Pad")])

    def test_fx_chain_follows_sends_and_skips_default_names(self):
        root = L.read_project(self.mmp).getroot()
        self.assertEqual(L.fx_chain_names(root, 1), ["Lows", "Bass bus"])
        self.assertEqual(L.fx_chain_names(root, 3), [])
        self.assertEqual(L.fx_chain_names(root, 0), [])

    def test_plan_groups_tracks_by_rule(self):
        p = L.plan(self.mmp)
        by_name = {t["name"]: t for t in p["tracks"]}
        # unnamed zyn on a channel that sends to "Bass bus": bass
        self.assertEqual(by_name["Default preset"]["source"], "bass")
        self.assertIn("Bass bus", by_name["Default preset"]["rule"])
        self.assertEqual(by_name["Lead"]["source"], "other")
        self.assertEqual(by_name["kick01.ogg"]["source"], "drums")
        self.assertEqual(by_name["hat"]["source"], "drums")
        self.assertEqual(by_name["Pad"]["source"], "unused")
        self.assertEqual(p["sources"], {"bass": [0], "other": [1],
                                        "drums": [2, 3]})

    def test_pitch_counts_the_loudest_low_oscillator(self):
        root = L.read_project(self.mmp).getroot()
        lead = L.playable_tracks(root)[1][1]
        f = L.track_facts(root, "song", lead)
        # key 57 at base note 57 is MIDI 69; osc 1 (equally loud) is two
        # octaves down, osc 2 (silent) is ignored
        self.assertEqual(f["pitch"]["median"], 69 - 24)

    def test_muted_copy_keeps_only_the_group_and_clears_solo(self):
        tree = L.read_project(self.mmp)
        out = L.muted_copy(tree, [2, 3])
        tracks = L.playable_tracks(out.getroot())
        self.assertEqual([t.get("muted") for _, t in tracks],
                         ["1", "1", "0", "0", "1"])
        self.assertTrue(all(t.get("solo") == "0"
                            for t in out.getroot().iter("track")))
        # the original tree is untouched
        self.assertEqual(L.playable_tracks(tree.getroot())[0][1].get("solo"),
                         "1")


class RulesTest(unittest.TestCase):
    def test_sample_paths(self):
        cases = {
            "drums/bassdrum03.ogg": "drums",
            "beats/house_loop01.ogg": "drums",
            "drumsynth/tr808/Handclap.ds": "drums",
            "drumsynth/instrument/mute_bass.ds": "bass",
            "drumsynth/instrument/E_Piano.ds": "other",
            "basses/rave_bass01.ogg": "bass",
            "instruments/bassslap01.ogg": "bass",
            "instruments/piano01.ogg": "other",
            "stringsnpads/strings01.ogg": "other",
            "drums/zap03.ogg": "other",
        }
        for path, want in cases.items():
            f = facts(plugin="audiofileprocessor", sample=path,
                      name=os.path.basename(path))
            self.assertEqual(L.classify(f)[0], want, path)

    def test_drum_words_win_over_bass_words(self):
        self.assertEqual(L.by_name("bassdrum"), "drums")
        self.assertEqual(L.by_name("Kick BD-A"), "drums")
        self.assertEqual(L.by_name("dub bass"), "bass")
        self.assertEqual(L.by_name("gated sub"), "bass")
        self.assertEqual(L.by_name("Progressive Pluck"), "other")
        self.assertIsNone(L.by_name("Default preset"))

    def test_voice_names_are_other_and_ambiguous(self):
        src, rule, amb = L.classify(facts(name="Choir"))
        self.assertEqual((src, amb), ("other", True))

    def test_plugins_and_tracks_without_cues(self):
        self.assertEqual(L.classify(facts(plugin="lb302"))[0], "bass")
        src, _, amb = L.classify(facts(plugin="kicker"))
        self.assertEqual((src, amb), ("drums", True))
        # no cue, whatever the notes: its own render decides
        low = facts(pitch={"median": 36, "p90": 43})
        self.assertEqual(L.classify(low)[0], L.PITCHED)

    def test_audio_decides_tracks_without_cues(self):
        self.assertEqual(L.by_audio(0.8, 0.5)[:3:2], ("bass", False))
        self.assertEqual(L.by_audio(0.02, 0.5)[:3:2], ("other", False))
        self.assertEqual(L.by_audio(0.45, 0.5)[:3:2], ("bass", True))
        self.assertEqual(L.by_audio(0.9, 1e-5)[0], "unused")

    def test_groups_leave_out_unused_and_undecided_tracks(self):
        tracks = [{"index": i, "source": s} for i, s in enumerate(
            ["drums", "unused", L.PITCHED, "bass", "drums"])]
        self.assertEqual(L.groups_of(tracks), {"drums": [0, 4],
                                               "bass": [3]})

    def test_unused_tracks(self):
        self.assertEqual(L.classify(facts(muted=True))[0], "unused")
        self.assertEqual(L.classify(facts(notes=0))[0], "unused")

    def test_licences_follow_debian_copyright(self):
        self.assertEqual(L.licence_of("demos/Saber-FinalStep.mmpz")[1],
                         "BSD-2-clause")
        self.assertEqual(L.licence_of("demos/Skiessi/Skiessi-Onion.mmpz")[1],
                         "CC-BY-SA-4.0")
        # a Skiessi project outside demos/Skiessi/ falls under Files: *
        self.assertEqual(L.licence_of("shorties/Skiessi-222.mmpz")[1],
                         "GPL-2+")
        self.assertEqual(L.licence_of("demos/Jousboxx-BuzzerBeater.mmpz")[1],
                         "CC-BY-SA-4.0")


if __name__ == "__main__":
    unittest.main()
