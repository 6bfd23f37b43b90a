"""The sim's sentences, by domain and by kind, so that answers stay on the question's topic.

Domains: `music` (instrument practice), `voice` (singing, public speaking), `strength`
(strength training) and `general` (coaching that fits any practice). Kinds: `tip` (what to do
next), `praise` (a strength), `concern` (a weakness), `reason` (why a practice plan was chosen)
and `insight` (an observation about recent practice).
"""

from __future__ import annotations

__all__ = ["DOMAINS", "KINDS", "SENTENCES_BY"]

DOMAINS = ("music", "voice", "strength", "general")
KINDS = ("tip", "praise", "concern", "reason", "insight")

_MUSIC: dict[str, tuple[str, ...]] = {
    "tip": (
        "Slow the tempo down until every note feels easy, then speed up gradually.",
        "Count the beat out loud when a passage keeps slipping away from you.",
        "Mark the hardest bar and practise it three times in a row without mistakes.",
        "Use a drone note to check that your intervals are in tune.",
        "End each practice with something you enjoy playing.",
        "Slide slowly between the two notes and listen for the exact target pitch.",
        "Repeat the phrase with a metronome at a tempo you can control.",
        "Practise the ending first so the finish feels the most secure.",
        "Keep the rhythm steady even when the melody becomes difficult.",
        "Listen to a reference recording and copy its phrasing.",
        "Break long passages into small chunks and link them one by one.",
        "Tune your instrument before every session, even if it sounds fine.",
        "Play the scale hands separately before you put both hands together.",
        "Keep your fingers close to the keys so fast runs stay even.",
    ),
    "praise": (
        "Your rhythm stayed steady through the whole passage.",
        "The tone was clear and even across the scale.",
        "Your fingering in the fast run was clean and relaxed.",
        "You kept a consistent tempo with the metronome.",
        "The phrasing followed the shape of the melody nicely.",
        "Your intonation on the long notes was accurate.",
    ),
    "concern": (
        "The tempo rushed in the faster bars.",
        "A few notes in the run were uneven in volume.",
        "The shift to the higher position came in late.",
        "Intonation drifted on the sustained notes.",
        "The dynamics stayed at one level for most of the piece.",
        "The hardest bar still breaks the flow of the passage.",
    ),
    "reason": (
        "Your recent takes show the tempo drifting, so this plan slows the hard bars down first.",
        "Intonation scored lowest lately, so the plan starts with slow intervals against a drone.",
        "Rhythm is your weakest area this week, so the plan builds it with a metronome.",
        "The same passage keeps breaking down, so the plan splits it into short chunks.",
    ),
    "insight": (
        "Your tempo is steadier than last week; the metronome work is paying off.",
        "Most of your practice time went to one piece; add a scale to warm up.",
        "Your cleanest takes came after a slow run-through, so keep that habit.",
        "Short daily sessions improved your rhythm more than one long session did.",
    ),
}

_VOICE: dict[str, tuple[str, ...]] = {
    "tip": (
        "Breathe low into your belly before each phrase so the air is ready.",
        "Keep your shoulders loose and let your jaw hang freely.",
        "Match the pitch with a gentle hum before you add the words.",
        "Pause for a full breath between ideas so your listener can keep up.",
        "Warm up with lip trills for two minutes before singing anything hard.",
        "Relax your tongue and let the vowel shape do the work.",
        "Exhale slowly on a hiss to build steady breath support.",
        "Speak a little slower than feels natural; it will sound calm to others.",
        "Keep your chin level so your throat stays open.",
        "Take a sip of water and rest your voice when it starts to feel dry.",
        "Vary the pace of your sentences to keep the audience with you.",
        "Sustain one note for as long as it stays steady and even.",
        "Place the sound forward, as if it rings just behind your teeth.",
        "Smile slightly on high notes to brighten the tone.",
        "Replace a filler word with a short silent pause.",
    ),
    "praise": (
        "Your breath support held steady to the end of each phrase.",
        "You paused well between ideas, which made the talk easy to follow.",
        "The pitch was accurate on the long sustained notes.",
        "Your voice sounded relaxed and warm throughout.",
        "You opened with a clear point and the audience could follow it.",
        "Your pace was calm and even for most of the talk.",
    ),
    "concern": (
        "Filler words crept in when you moved to a new point.",
        "The pace sped up near the end of the talk.",
        "Breath ran short before the end of the longer phrases.",
        "The high notes went slightly flat.",
        "Tension in the jaw made the tone sound tight.",
        "The main point came late and was easy to miss.",
    ),
    "reason": (
        "Filler words showed up most in your recent sessions, so this plan works on pauses.",
        "Pitch accuracy scored lowest lately, so the plan starts with slow sirens and hums.",
        "Your breath ran short in recent takes, so the plan builds breath support first.",
        "Your pace rushed in recent talks, so the plan practises slower openings.",
    ),
    "insight": (
        "You used fewer filler words this week than last week.",
        "Your breathing is steadier at the end of long phrases than a week ago.",
        "Your pace is calmer in the first minute; the openings are improving.",
        "Pitch accuracy improves when you warm up first, so keep the warm-up.",
    ),
}

_STRENGTH: dict[str, tuple[str, ...]] = {
    "tip": (
        "Brace your core before each rep and keep it tight until the bar is racked.",
        "Keep your shoulder blades squeezed together and pinned to the bench.",
        "Lower the bar under control and touch the same spot on your chest every rep.",
        "Drive your feet into the floor as you press the bar up.",
        "Keep your wrists stacked over your elbows throughout the press.",
        "Stop the set one or two reps before your form starts to break down.",
        "Add weight in small steps only when every rep of the last session looked the same.",
        "Rest two to three minutes between heavy sets so each set gets full effort.",
        "Film one set from the side to check your bar path.",
        "Warm up with the empty bar and a few lighter sets before your working weight.",
        "Use a spotter or safety pins whenever you press heavy.",
        "Push your hips back first when you squat and keep your knees over your toes.",
        "Keep the bar close to your legs for the whole deadlift.",
        "Exhale through the hardest part of the lift and breathe in at the top.",
    ),
    "praise": (
        "Your bar path was straight and consistent across the set.",
        "You kept your core braced on every rep.",
        "The lowering phase was controlled and even.",
        "Your feet stayed planted and gave you a stable base.",
        "You stopped the set with good form instead of grinding out a bad rep.",
        "Rep speed stayed steady through the working sets.",
    ),
    "concern": (
        "Your elbows flared out wide on the last reps.",
        "The bar bounced off your chest on the heavier sets.",
        "Your hips lifted off the bench during the hardest reps.",
        "The bar drifted toward your face on the way up.",
        "Rest between sets was too short to recover for heavy work.",
        "Your lower back rounded at the bottom of the lift.",
    ),
    "reason": (
        "Your last sets lost form near the end, so this plan lowers the weight and adds control.",
        "Your bar path varied between reps, so the plan uses slow tempo reps to groove it.",
        "Lockout is your weakest point lately, so the plan adds paused and partial reps.",
        "You trained hard several days in a row, so today's plan is a lighter technique day.",
    ),
    "insight": (
        "Your working weight went up this week while your form stayed consistent.",
        "You trained three days this week; steady sessions build strength fastest.",
        "Your best sets came after a full warm-up, so keep warming up first.",
        "Rest days between heavy sessions kept your rep quality high.",
    ),
}

_GENERAL: dict[str, tuple[str, ...]] = {
    "tip": (
        "Practice in short focused blocks of ten minutes, then rest for two.",
        "Record yourself once a day and review it with fresh eyes.",
        "Pick one small goal for this session and measure it at the end.",
        "Write down one thing that improved today and one thing to try tomorrow.",
        "Aim for consistency first and intensity second.",
        "Rest is part of practice; short breaks help the skill settle.",
        "Celebrate small progress, because steady gains add up quickly.",
        "Notice where you hold tension and release it on the out breath.",
        "Start each session with an easy warm-up before the hard work.",
        "Practise a little every day rather than a lot once a week.",
        "Work on one focus area at a time so you can see the change.",
        "End each session by noting what to work on next time.",
    ),
    "praise": (
        "You stayed focused on one goal for the whole session.",
        "Your effort was consistent from start to finish.",
        "You practised regularly this week, which builds real progress.",
        "You noticed your own mistakes and corrected them quickly.",
        "You kept a calm, steady approach throughout.",
    ),
    "concern": (
        "The session tried to cover too many things at once.",
        "Quality dropped near the end when you were tired.",
        "The warm-up was skipped, so the first attempts were rough.",
        "The same mistake repeated without a pause to fix it.",
        "Sessions were irregular this week, which slows progress.",
    ),
    "reason": (
        "This is your lowest focus area lately, so the plan spends most of the time on it.",
        "You practised less this week, so the plan is short and easy to start.",
        "The same issue came up in several sessions, so the plan targets it directly.",
        "You are on a good streak, so the plan keeps the habit going with a focused session.",
    ),
    "insight": (
        "You practised on most days this week; keep the streak going with a short session.",
        "Your scores are trending up in your main focus area.",
        "Your best sessions were the short, focused ones.",
        "You came back after a break; a small session today rebuilds the habit.",
    ),
}

SENTENCES_BY: dict[str, dict[str, tuple[str, ...]]] = {
    "music": _MUSIC,
    "voice": _VOICE,
    "strength": _STRENGTH,
    "general": _GENERAL,
}
