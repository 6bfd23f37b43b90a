"""Guardrails before the model, run on every turn: pure functions, regular expressions only.

- `mask_pii`: e-mail addresses and phone numbers become `[email]` and `[phone]` in what goes
  upstream. Numbers a coaching conversation is full of (sets and reps, bpm, times, years, dates,
  scores, decimals, ranges) are left alone: a phone number must look like one (a `+` country
  code, an area code in brackets, dash- or dot-separated groups of a phone's shape, a national
  number starting with 0, or a bare run of 10-15 digits).
- `safety_concern`: a message about pain, injury or self-harm, which gets the configured safety
  answer instead of a coaching reply (`safety_answer`). It looks for a first-person report
  (a body part that hurts, "sharp pain", "I pulled a muscle", "I want to hurt myself"), not for
  the words alone: "pain-free practice", "avoid injury" and "this song is killing it" are
  routine coaching.
"""

from __future__ import annotations

import re
from typing import Literal

from gateway.settings import AgentSettings

__all__ = ["Concern", "mask_pii", "safety_answer", "safety_concern"]

Concern = Literal["injury", "self_harm"]

# ------------------------------------------------------------------ PII

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}(?![\w-])"
)
# Seven digits with little between them: without one, no phone number (a cheap first pass).
_SEVEN_DIGITS = re.compile(r"\d(?:[ ().+-]{0,3}\d){6}")
# A run of digit groups that might be a phone number; `_is_phone` decides.
_PHONE_CANDIDATE = re.compile(
    r"(?=[+(\d])(?<![\w+/:,.-])"
    r"(?:\+\d{1,3}[ .-]?)?"
    r"(?:\(\d{1,5}\)[ .-]?)?"
    r"\d{1,15}(?:(?: |-|\.| - )\d{1,6}){0,5}"
    r"(?![\w/:%]|[.,-]\d)"
)
_DATE = re.compile(r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})$")
_GROUPS = re.compile(r"\d+")


def mask_pii(text: str) -> str:
    """`text` with e-mail addresses as `[email]` and phone numbers as `[phone]`."""
    if "@" in text:
        text = _EMAIL.sub("[email]", text)
    if not _SEVEN_DIGITS.search(text):
        return text
    return _PHONE_CANDIDATE.sub(_mask_phone, text)


def _mask_phone(match: re.Match[str]) -> str:
    found = match.group(0)
    return "[phone]" if _is_phone(found) else found


def _is_phone(candidate: str) -> bool:
    groups = _GROUPS.findall(candidate)
    digits = sum(len(g) for g in groups)
    if not 7 <= digits <= 15 or _DATE.match(candidate):
        return False
    if candidate.startswith("+"):
        return digits >= 8
    if "(" in candidate:
        return digits >= 9
    if len(groups) == 1:
        return digits >= 10  # a bare run: 4155550123, 07700900123
    return _grouped_phone(candidate, groups, digits)


def _grouped_phone(candidate: str, groups: list[str], digits: int) -> bool:
    if groups[0].startswith("0") and digits >= 9:
        return True  # a national number: 020 7946 0958, 07700 900123, 06 12 34 56 78
    if "-" in candidate or "." in candidate:
        # 555-0123, 415-555-0123, 415.555.0123 (not 1990-2024, 12.5, 100-120)
        shapes = {(3, 4), (3, 3, 4), (4, 3, 4), (3, 4, 4), (2, 4, 4), (4, 4, 4)}
        return tuple(len(g) for g in groups) in shapes
    return tuple(len(g) for g in groups) in {(3, 3, 4), (3, 4, 4), (4, 3, 4)}


# ------------------------------------------------------------------ safety

_BODY = (
    r"(?:knees?|back|lower back|upper back|shoulders?|wrists?|elbows?|ankles?|hips?|neck|"
    r"throat|voice|vocal (?:cords?|folds?)|chest|head|hands?|fingers?|thumbs?|feet|foot|legs?|"
    r"arms?|hamstrings?|calf|calves|quads?|glutes?|groin|jaw|ribs?|spine|muscles?|joints?|"
    r"tendons?|heels?|shins?|toes?|ears?|eyes?|stomach|abs|forearms?|biceps?|triceps?|lungs?)"
)
_HURTS = (
    r"(?:hurts?|hurting|aches?|aching|burns?|burning|throbs?|throbbing|is killing me|"
    r"(?:is|are|feels?|went|goes|got) (?:numb|swollen|sore|stiff and painful)|swelled up|"
    r"gave out|gives out|popped|clicks? (?:and|with) pain|locks? up)"
)
_INJURY_PATTERNS = (
    # "my knee hurts when I squat", "my lower back is killing me"
    rf"\b(?:my|the) (?:(?:left|right|upper|lower|bad) )?{_BODY}\b(?: \w+){{0,3}} {_HURTS}\b",
    # "sharp pain in my wrist", "shooting pains", "chest pain"
    r"\b(?:sharp|shooting|stabbing|severe|sudden|constant|chronic|burning|throbbing|intense|"
    r"bad|terrible|awful|real|serious|nerve|chest|joint|back|knee|neck|wrist) pains?\b",
    # "pain in my shoulder", "pain when I breathe in"
    r"\bpains? (?:in|on|around|behind|under) (?:my|the)\b",
    r"\b(?:i'?m|i am|i'?ve been|i have been) (?:in|having) (?:a lot of |so much |some )?pain\b",
    r"\bit (?:really |still )?(?:hurts|aches)\b(?! my feelings)",
    # "I pulled a muscle", "I think I sprained my ankle", "I hurt myself squatting"
    r"\bi(?: think i| may have| might have|'ve| have)? (?:hurt|injured|sprained|strained|"
    r"pulled|twisted|tore|torn|broke|broken|dislocated|tweaked|jammed|bruised) "
    r"(?:my|a|myself|something)\b",
    r"\b(?:i'?m|i am|i got|got) (?:injured|hurt)\b",
    r"\b(?:sore|raw) throat\b|\bhoarse for (?:days|weeks)\b|\blost my voice\b",
    r"\b(?:passed out|blacked out|fainted|feel(?:ing)? faint|can'?t breathe|"
    r"coughing (?:up )?blood|numbness|tingling in)\b",
    r"\b(?:an? |my )?(?:injury|concussion|fracture|tendinitis|tendonitis|torn ligament)\b",
)
# A match of the injury patterns inside one of these is advice, not a report.
_ROUTINE = re.compile(
    r"\b(?:avoid(?:ing)?|prevent(?:ing|ion)?|without|no|free of|reduce|risk of|"
    r"pain-free|injury-free|so you don'?t get) (?:\w+ ){0,3}"
    r"(?:injur\w*|pain\w*|hurt\w*|strain\w*)\b"
    r"|\b(?:injury|pain) (?:prevention|risk|management|free)\b"
)
_SELF_HARM = re.compile(
    r"\b(?:(?:want|wanna|going|gonna|plan(?:ning)?|thinking (?:about|of)|feel like|tempted)"
    r" (?:to )?(?:hurt|harm|kill|cut|injure) myself"
    r"|kill(?:ing)? myself|end(?:ing)? (?:my (?:own )?life|it all)"
    r"|take my (?:own )?life|suicid\w*|self[- ]harm\w*|cutting myself"
    r"|(?:want|wanna) to die|don'?t want to (?:live|be alive|be here anymore|wake up)"
    r"|no reason to live|better off dead|not worth living)"
)
_INJURY = re.compile("|".join(f"(?:{p})" for p in _INJURY_PATTERNS))
# A word every injury pattern needs: without one, they are not tried (a cheap first pass).
_INJURY_WORD = re.compile(
    r"hurt|ach|burn|throb|killing|numb|swol|swel|sore|gave out|gives out|pop|click|lock|pain|"
    r"injur|sprain|strain|pull|twist|tor[en]|brok|dislocat|tweak|jam|bruis|raw|hoarse|voice|"
    r"passed out|blacked out|faint|breathe|blood|tingl|concuss|fractur|tendi|tendo"
)


def safety_concern(text: str) -> Concern | None:
    """`"self_harm"` or `"injury"` when the message reports one, else None."""
    lowered = text.lower().replace("\u2019", "'")
    if _SELF_HARM.search(lowered):
        return "self_harm"
    if not _INJURY_WORD.search(lowered):
        return None
    routine = [m.span() for m in _ROUTINE.finditer(lowered)]
    for match in _INJURY.finditer(lowered):
        start, end = match.span()
        if not any(start < e and s < end for s, e in routine):  # overlaps advice
            return "injury"
    return None


def safety_answer(concern: Concern, settings: AgentSettings) -> str:
    """The configured answer to a message with `concern`."""
    return settings.crisis_text if concern == "self_harm" else settings.safety_text
