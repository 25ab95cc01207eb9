"""Questions, action items and follow-ups in one transcript message, from spaCy's parse (no Kafka).

Each sentence gets at most one insight. A sentence is a *commitment* when a clause puts an action on someone:
a modal or semi-modal future/obligation ("I'll", "we need to", "Maria is going to"), a request ("can you...",
"please..."), an imperative or a proposal ("let's..."). A commitment whose action is getting back in touch or
scheduling the next touchpoint is a ``follow_up``; any other is an ``action_item``; failing both, a sentence that
asks something (wh-word, auxiliary inversion, "?" or "tell me about...") is a ``question``.

Not insights: rhetorical questions, finished actions (past or perfect), hypotheticals ("would", "if we had"),
possibility or ability ("I can see your screen", "we could..."), reported speech (a commitment inside "she said..."
is never a main clause), vague intentions ("someday", "at some point") and courtesy ("let me know if you have any
questions").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from spacy.language import Language
from spacy.tokens import Span, Token

from processors.insights.due_dates import DuePhrase, find_due_phrases, local_zone, mentions_due_date
from processors.insights.language import clean_asr_text_with_offsets, load_nlp

__all__ = ["Assignee", "DetectedInsight", "InsightType", "detect_insights"]

InsightType = Literal["question", "action_item", "follow_up"]


@dataclass(frozen=True)
class Assignee:
    """Who an action falls on: the speaker ("I'll..."), or someone named ("Maria, can you...")."""

    name: str  # the speaker's name when ``is_speaker`` (empty if the speaker is unknown)
    is_speaker: bool


@dataclass(frozen=True)
class DetectedInsight:
    type: InsightType
    text: str  # the sentence without disfluencies, capitalised and punctuated (a question ends with "?")
    confidence: float  # 0..1
    assignee: Assignee | None
    due_by: datetime | None  # timezone-aware, in the conversation's local offset
    due_text: str | None  # the phrase, e.g. "by next Friday"
    char_offset: int  # where the sentence starts in the original text


def detect_insights(
    text: str,
    *,
    speaker_name: str | None,
    spoken_at: datetime,
    timezone_offset_min: int = 0,
    nlp: Language | None = None,
) -> list[DetectedInsight]:
    """The insights in one message, in order; ``timezone_offset_min`` as JavaScript's ``getTimezoneOffset``."""
    cleaned, origin = clean_asr_text_with_offsets(text)
    if not cleaned.strip():
        return []
    nlp = nlp or load_nlp()
    doc = nlp(cleaned, disable=[name for name in _UNUSED_PIPES if name in nlp.pipe_names])
    local_now = spoken_at.astimezone(local_zone(timezone_offset_min))
    found = []
    for sentence in doc.sents:
        insight = _sentence_insight(sentence, speaker_name, local_now)
        if insight is not None:
            found.append(_with_offset(insight, _original_start(text, origin, sentence.start_char)))
    return found


def _original_start(text: str, origin: list[int], cleaned_start: int) -> int:
    """Where a sentence starts in the original text, counting the fillers before its first kept word."""
    start = origin[cleaned_start - 1] + 1 if cleaned_start > 0 else 0
    while start < len(text) and text[start].isspace():
        start += 1
    return start


# Entities are not needed here (names come from the parse) and the recogniser costs ~40% of the pipeline's time.
_UNUSED_PIPES = ["ner"]

# --- lexicons -----------------------------------------------------------------------------------------------------

_DISCOURSE = {
    "so", "okay", "ok", "well", "yeah", "yes", "alright", "right", "and", "but", "then", "now", "also", "actually",
    "great", "cool", "thanks", "sure", "hey", "hi", "oh", "anyway", "basically", "honestly", "please", "good",
    "perfect", "today", "quick", "just", "awesome", "fine", "um", "uh",
}  # fmt: skip
_WH_WORDS = {"what", "who", "whom", "whose", "where", "when", "why", "how", "which", "what's", "who's", "how's"}
_INVERTING_AUX = {"do", "be", "have", "can", "could", "would", "will", "should", "shall", "may", "might", "must"}
# Verbs whose "request" is really a question: "can you tell me...", "walk me through...", "describe a time when..."
_INFO_VERBS = {
    "tell", "describe", "explain", "walk", "elaborate", "clarify", "remind", "confirm", "talk", "share", "repeat",
    "rephrase", "spell", "speak",
}  # fmt: skip
# States, perception and small talk: "I'll be out", "we'll see", "I can hear you", "take care".
_NON_ACTION = {
    "be", "see", "think", "know", "guess", "hope", "wish", "like", "love", "believe", "understand", "imagine",
    "remember", "feel", "seem", "mean", "hear", "agree", "appreciate", "worry", "wonder", "want", "wait", "relax",
    "enjoy", "thank", "excuse", "forgive", "trust", "listen", "look", "hold", "hang", "bear", "say", "find", "need",
    "happen", "come", "go", "sorry", "welcome", "mind", "hesitate", "doubt", "suppose", "recall", "assume",
    "got",  # the lemmatiser leaves "Got it" as "got"
    "admit", "acknowledge", "confess", "forget", "regret",
}  # fmt: skip
# "I'm going to send", "we need to send", "would you mind sending", "don't forget to send": the action is "send".
_PASS_THROUGH = {
    "go", "need", "have", "get", "got", "try", "mind", "want", "plan", "like", "love", "forget", "remember",
}  # fmt: skip
# A question inside "I don't know what...", "she asked whether..." is not asked.
_EMBEDDING_VERBS = {
    "know", "say", "ask", "wonder", "tell", "think", "remember", "understand", "see", "explain", "mean", "care",
    "guess", "decide", "figure", "find", "show", "check", "confirm", "matter", "depend", "learn", "describe",
}  # fmt: skip
_LEAVING_VERBS = {"leave", "jump", "hop", "drop", "run", "head", "step"}
_SMALL_TALK_OBJECTS = {"care", "time", "break", "second", "minute", "moment", "luck", "day", "weekend", "evening"}
_VAGUE_TIME = re.compile(
    r"\b(?:some ?day|one day|at some point|eventually|sometime|one of these days|down the road|in the future)\b",
    re.IGNORECASE,
)
_RHETORICAL = re.compile(
    r"\b(?:who (?:knows|cares)|how about that|isn'?t (?:that|it) (?:something|funny|ironic|always|the way)"
    r"|what (?:can|could) (?:you|i|we) (?:do|say)|(?:do )?you know what i mean|guess what|go figure"
    r"|how (?:weird|cool|crazy|funny|strange|great|nice|about that) is that|what else is new"
    r"|(?:can|could) you (?:believe|imagine)|are you (?:kidding|serious|joking)|(?:do )?you see what i mean)\b",
    re.IGNORECASE,
)
_COURTESY = re.compile(
    r"\bif (?:you have|there are) any(?: other| more| further)? questions|\bif anything comes up\b"
    r"|\bif you need anything\b",
    re.IGNORECASE,
)
# Follow-ups: verb + particle, and scheduling verbs whose object is a meeting.
_FOLLOW_UP_PARTICLES = {
    "follow": {"up"}, "circle": {"back"}, "loop": {"back"}, "get": {"back"}, "check": {"in", "back"},
    "reach": {"out"}, "catch": {"up"}, "call": {"back"}, "touch": {"base"}, "come": {"back"},
}  # fmt: skip
_FOLLOW_UP_VERBS = {"reconnect", "regroup", "sync", "resync", "reconvene", "revisit", "ping", "meet", "follow-up"}
_SCHEDULING_VERBS = {
    "schedule", "set", "book", "arrange", "organize", "organise", "plan", "put", "send", "block", "find", "hop",
    "jump", "get", "have", "do", "line", "reschedule", "push", "move", "postpone",
}  # fmt: skip
_MEETING_NOUNS = {
    "call", "meeting", "demo", "session", "sync", "huddle", "follow", "followup", "follow-up", "catch-up", "chat",
    "time", "slot", "round", "interview", "retro", "retrospective", "check-in", "touchpoint", "conversation",
    "invite", "invitation", "calendar", "share", "debrief", "discussion", "workshop", "onsite", "1:1", "standup",
}  # fmt: skip
_PEOPLE_PRONOUNS = {"you", "me", "him", "her", "them", "us"}
# ASR glues sentences: "sounds good i'll send it over" parses as one clause under "sounds".
_RUN_ON_OPENERS = {"be", "sound", "seem", "look", "work", "make", "thank", "appreciate"}
_WILLING = {"sure", "happy", "glad", "able", "ready", "willing"}
_HEDGES = {"think", "guess", "believe", "suppose", "feel", "reckon"}
_GROUP_SUBJECTS = {"someone", "somebody", "anyone", "anybody", "everyone", "everybody", "one"}
_TEAM_NOUNS = {
    "team", "group", "folks", "guys", "engineering", "marketing", "sales", "legal", "finance", "support", "qa",
    "ops", "devops", "design", "product", "procurement", "leadership", "management", "hr",
}  # fmt: skip


# --- sentences ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Commitment:
    predicate: Token  # the action verb
    owner: Literal["speaker", "addressee", "group", "named"]
    name: str | None
    strength: float


def _sentence_insight(sentence: Span, speaker_name: str | None, local_now: datetime) -> DetectedInsight | None:
    if _RHETORICAL.search(sentence.text):
        return None
    commitment = _sentence_commitment(sentence)
    if commitment is not None:
        return _commitment_insight(sentence, commitment, speaker_name, local_now)
    confidence = _question_confidence(sentence)
    if confidence is None:
        return None
    return DetectedInsight("question", _display(sentence.text, "?"), confidence, None, None, None, 0)


def _commitment_insight(
    sentence: Span, commitment: _Commitment, speaker_name: str | None, local_now: datetime
) -> DetectedInsight:
    follow_up = next((verb for verb in _chained_verbs(commitment.predicate) if _is_follow_up(verb)), None)
    due = _due_phrase(sentence, follow_up or commitment.predicate, local_now)
    confidence = min(0.99, commitment.strength + (0.05 if due is not None else 0.0))
    if commitment.owner == "speaker":
        assignee: Assignee | None = Assignee(speaker_name or "", True)
    elif commitment.name is not None:
        assignee = Assignee(commitment.name, False)
    else:
        assignee = None
    kind: InsightType = "follow_up" if follow_up is not None else "action_item"
    asked = sentence.text.rstrip().endswith("?") or _interrogative_form(sentence) == "inverted"
    end = "?" if asked else "."
    return DetectedInsight(
        kind, _display(sentence.text, end), confidence, assignee, due.value if due else None,
        due.text if due else None, 0,
    )  # fmt: skip


def _with_offset(insight: DetectedInsight, offset: int) -> DetectedInsight:
    return DetectedInsight(
        insight.type, insight.text, round(insight.confidence, 3), insight.assignee, insight.due_by, insight.due_text,
        offset,
    )  # fmt: skip


def _display(text: str, end: str) -> str:
    """Capitalised, lone "i" upper-cased, ending in ``end`` unless it already ends in punctuation."""
    text = re.sub(r"\bi\b", "I", text.strip())
    text = text[:1].upper() + text[1:]
    if end == "?":
        return text.rstrip(".!?,; ") + "?"
    return text if text[-1:] in ".!?" else text.rstrip(",; ") + "."


# --- questions ----------------------------------------------------------------------------------------------------


def _question_confidence(sentence: Span) -> float | None:
    first = _first_content_token(sentence)
    if first is not None and _is_rhetorical_wh(first):
        return None
    stripped = sentence.text.rstrip()
    form = _interrogative_form(sentence)
    if stripped.endswith("?"):
        return 0.95 if form else 0.8
    if form is None:
        return None
    if stripped.endswith((".", "!")) and form not in {"info_request", "wondering"}:
        return None  # punctuated text marked it a statement: "Isn't that something."
    return {"wh": 0.85, "inverted": 0.8, "info_request": 0.75, "wondering": 0.7, "embedded": 0.7}[form]


def _interrogative_form(sentence: Span) -> str | None:
    first = _first_content_token(sentence)
    if first is None:
        return None
    if first.lower_ in _WH_WORDS and _is_main_clause_word(first, sentence.root):
        return "wh"
    if _is_inverted_aux(first):
        return None if _is_negated_demonstrative(first) else "inverted"
    if first.dep_ == "ROOT" and _asks_for_information(first) and first.tag_ == "VB":
        return "info_request"
    if _is_wondering(sentence.root):
        return "wondering"
    if any(_is_trailing_question_clause(child) for child in sentence.root.children):
        return "embedded"
    return None


def _is_wondering(root: Token) -> bool:
    """ "I was wondering whether you support SSO", "I wonder if you could tell me...": asks, politely."""
    subject = _subject(root)
    if root.lemma_ != "wonder" or subject is None or subject.lower_ != "i" or root.tag_ == "VBD":
        return False
    return any(
        c.dep_ == "ccomp" and any(g.lower_ in {"if", "whether"} | _WH_WORDS for g in c.children) for c in root.children
    )


def _first_content_token(sentence: Span) -> Token | None:
    for token in sentence:
        if token.is_punct or token.pos_ == "INTJ" or token.lower_ in _DISCOURSE or _is_vocative(token):
            continue
        return token
    return None


def _is_main_clause_word(token: Token, root: Token) -> bool:
    head = token.head
    while head != root:
        if head.dep_ in {"advcl", "csubj", "relcl", "acl"}:
            return False
        head = head.head
    return True


def _is_rhetorical_wh(token: Token) -> bool:
    """ "who doesn't want...", "why would anyone...": a wh-question that expects no answer."""
    clause = token.head
    negated = any(child.dep_ == "neg" for child in clause.children)
    anyone = any(child.lower_ in {"anyone", "anybody"} for child in clause.children)
    return (token.lower_ == "who" and token.dep_ == "nsubj" and negated) or (token.lower_ == "why" and anyone)


def _is_inverted_aux(token: Token) -> bool:
    if token.lemma_.lower() not in _INVERTING_AUX or token.pos_ not in {"AUX", "VERB"}:
        return False
    clause = token if token.dep_ == "ROOT" else token.head
    subjects = [child for child in clause.children if child.dep_ in {"nsubj", "nsubjpass", "expl"}]
    if not subjects and token.lemma_ == "be" and token == clause:
        # "is the staging deploy still broken": the parser makes the subject an attribute
        return any(child.dep_ == "attr" and child.i > token.i for child in clause.children)
    return any(subject.i > token.i for subject in subjects) and not any(s.i < token.i for s in subjects)


def _is_negated_demonstrative(aux: Token) -> bool:
    """ "isn't that the third outage": rhetorical unless asked with "?" (the caller checks the mark)."""
    clause = aux if aux.dep_ == "ROOT" else aux.head
    negated = any(child.dep_ == "neg" for child in clause.children)
    demonstrative = any(c.dep_ == "nsubj" and c.lower_ in {"that", "it", "this"} for c in clause.children)
    return negated and demonstrative and aux.lemma_ == "be"


def _is_trailing_question_clause(clause: Token) -> bool:
    """An ASR run-on's second clause: "it happened again this morning what do you think is going on"."""
    if clause.dep_ not in {"ccomp", "parataxis", "conj"} or clause.i < clause.head.i:
        return False
    if clause.head.lemma_.lower() in _EMBEDDING_VERBS:
        return False
    left = clause.doc[clause.left_edge.i]
    return (left.lower_ in _WH_WORDS and left.i > clause.head.i) or _is_inverted_aux(left)


# --- commitments --------------------------------------------------------------------------------------------------


def _sentence_commitment(sentence: Span) -> _Commitment | None:
    if _VAGUE_TIME.search(sentence.text) or _COURTESY.search(sentence.text):
        return None
    first = _first_content_token(sentence)
    if first is not None and first.lower_ == "let":
        return _let_commitment(first, sentence)
    for clause in _main_clauses(sentence):
        commitment = _clause_commitment(clause, sentence) or _polite_request(clause, sentence)
        if commitment is not None and clause.dep_ == "ccomp" and _is_hedge(clause.head):
            return _Commitment(commitment.predicate, commitment.owner, commitment.name, commitment.strength - 0.1)
        if commitment is not None:
            return commitment
    return None


def _polite_request(head: Token, sentence: Span) -> _Commitment | None:
    """ "I was wondering if you could send me...", "do you think you could send...": a request, wrapped."""
    subject = _subject(head)
    if subject is None:
        return None
    wondering = head.lemma_ == "wonder" and subject.lower_ == "i"
    asking_opinion = head.lemma_ == "think" and subject.lower_ == "you" and "do" in _aux_lemmas(head)
    if not (wondering or asking_opinion):
        return None
    for clause in (c for c in head.children if c.dep_ == "ccomp"):
        clause_subject = _subject(clause)
        marked = asking_opinion or any(c.lower_ in {"if", "whether"} for c in clause.children)
        if (
            marked
            and clause_subject is not None
            and clause_subject.lower_ == "you"
            and _modality(clause) in {"ability", "hypothetical", "future"}
            and not _asks_for_information(clause)
        ):
            return _Commitment(_predicate(clause), "addressee", _addressee(sentence), 0.75)
    return None


def _main_clauses(sentence: Span) -> Iterator[Token]:
    """The root and the clauses coordinated with it (never reported or conditional sub-clauses).

    A clause under a present-tense "I think" / "I guess" (or "the next step is") counts too: hedged, not reported.
    """
    stack = [sentence.root]
    while stack:
        clause = stack.pop(0)
        yield clause
        opens = clause.lemma_ in _RUN_ON_OPENERS or _is_hedge(clause)
        following = {"conj", "parataxis", "ccomp"} if opens else {"conj", "parataxis"}
        stack += [c for c in clause.children if c.dep_ in following and c.pos_ in {"VERB", "AUX"}]


def _is_hedge(verb: Token) -> bool:
    subject = _subject(verb)
    return (
        verb.lemma_ in _HEDGES
        and verb.tag_ == "VBP"
        and subject is not None
        and subject.lower_ == "i"
        and not _auxiliaries(verb)
    )


def _clause_commitment(head: Token, sentence: Span) -> _Commitment | None:
    if head.dep_ == "conj" and _subject(head) is None and not _auxiliaries(head):
        return None  # shares its subject and modal with the clause before it, which was already judged
    first = _first_content_token(sentence)
    if first is not None and first.lower_ in _WH_WORDS and first.i < head.i:
        # "how would you design...", "who's going to own..." ask; "why don't we...", "how about we..." propose
        return _suggestion(first, head)
    if any(child.dep_ == "neg" for child in head.children) and not _is_dont_forget(head):
        return None
    if head.lemma_ == "let" and head.tag_ == "VB" and not _auxiliaries(head) and _subject(head) is None:
        return _let_commitment(head, sentence)
    subject = _subject(head) or _name_before_modal(head)
    modal = _modality(head)
    predicate = _predicate(head)
    if _is_non_action(predicate):
        return None
    if subject is None:
        return _imperative(head, predicate, modal, sentence)
    if _is_inverted(head, subject):
        return _request(subject, predicate, modal, sentence)
    return _declared(subject, predicate, modal, sentence)


def _suggestion(wh: Token, head: Token) -> _Commitment | None:
    """ "why don't we take this offline?", "why don't you send me a proposal?", "how about we meet on Friday?"."""
    subject = _subject(head)
    if subject is None or subject.lower_ not in {"we", "you"} or _is_non_action(head) or _asks_for_information(head):
        return None
    nxt = wh.doc[wh.i + 1] if wh.i + 1 < len(wh.doc) else None
    present_do = any(aux.lower_ == "do" for aux in _auxiliaries(head))  # "why didn't you..." reproaches
    why_not = wh.lower_ == "why" and any(c.dep_ == "neg" for c in head.children) and present_do
    how_about = wh.lower_ in {"how", "what"} and nxt is not None and nxt.lower_ == "about"
    if not (why_not or how_about):
        return None
    return _Commitment(head, "group" if subject.lower_ == "we" else "addressee", None, 0.75)


def _aux_lemmas(head: Token) -> set[str]:
    return {aux.lemma_.lower() for aux in _auxiliaries(head)}


def _subject(head: Token) -> Token | None:
    subjects = (c for c in head.children if c.dep_ in {"nsubj", "nsubjpass", "expl"} and not _is_vocative(c))
    return next(subjects, None)


def _name_before_modal(head: Token) -> Token | None:
    """A name the small model mis-tags ("Raj/RB will prepare"): a capitalised word right before the modal."""
    modal = next((aux for aux in _auxiliaries(head) if aux.tag_ == "MD" or aux.lemma_ == "be"), None)
    if modal is None or modal.i == 0:
        return None
    before = modal.doc[modal.i - 1]
    if before.head == head and before.is_title and before.is_alpha and not before.is_stop and before.i < modal.i:
        return None if before.lower_ in _DISCOURSE or before.lower_.endswith("ly") else before
    return None


def _auxiliaries(head: Token) -> list[Token]:
    return [c for c in head.children if c.dep_ in {"aux", "auxpass"}]


def _is_dont_forget(head: Token) -> bool:
    return head.lemma_ == "forget" and head.tag_ == "VB" and _subject(head) is None


def _modality(head: Token) -> str | None:
    """ "future", "obligation", "ability", "hypothetical", "past", "progressive", "request_do" or None."""
    words = {aux.lower_ for aux in _auxiliaries(head)}
    lemmas = {aux.lemma_.lower() for aux in _auxiliaries(head)}
    if words & {"would", "'d"} and head.lemma_ in {"like", "love"} and _xcomp(head) is not None:
        return "future"  # "I'd like to schedule a call" states an intention
    willing = next((c.lower_ for c in head.children if c.dep_ == "acomp"), None) if _willing_to(head) else None
    past = head.tag_ == "VBD" or words & {"was", "were", "might", "may"}
    if willing in {"happy", "glad", "ready", "willing"} and not past:
        return "future"  # "I'm happy to set up a call", "I'd be glad to send references": an offer
    if words & {"would", "'d", "might", "may"}:
        return "hypothetical"
    if "have" in _aux_lemmas(head) and head.tag_ == "VBN":
        return "past"  # "I should have sent it", "we'll have finished by then" is rare in meetings
    if "shall" in words:
        return "obligation"  # "shall we meet again?" proposes
    if words & {"will", "'ll", "wo"}:
        return "future" if head.lemma_ not in {"need", "have"} else "obligation"
    if words & {"can", "could", "ca"}:
        return "ability"
    if words & {"should", "must"}:
        return "obligation"
    if head.lemma_ == "go" and head.tag_ == "VBG" and _xcomp(head) is not None:
        return "past" if words & {"was", "were"} else "future"
    if head.lemma_ in {"need", "have", "get", "got", "gotta"} and _xcomp(head) is not None:
        return "past" if head.tag_ in {"VBD", "VBN"} and head.lower_ not in {"got"} else "obligation"
    if head.tag_ in {"VBD", "VBN"}:
        return "past"
    if lemmas & {"do"}:
        return "request_do"
    if "be" in lemmas and head.tag_ == "VBG":
        return "progressive"  # "I'm sending it tomorrow" commits only with a date, which the caller checks
    return None


def _xcomp(head: Token) -> Token | None:
    return next((c for c in head.children if c.dep_ == "xcomp" and c.pos_ in {"VERB", "AUX"}), None)


def _predicate(head: Token) -> Token:
    """The action verb: "send" in "I'm going to send", "I need to send", "would you mind sending"."""
    predicate = head
    for _ in range(3):
        lemma = predicate.lemma_.lower()
        following = _xcomp(predicate)
        if following is None or lemma not in _PASS_THROUGH:
            break
        predicate = following
    willing = _willing_to(predicate)
    if willing is not None:
        return willing  # "I'll be sure to loop you in", "I'm happy to set up a call"
    then = next((c for c in predicate.children if c.dep_ == "conj" and c.pos_ == "VERB"), None)
    if predicate.lemma_ == "go" and "ahead" in _particles(predicate) and then is not None:
        return then  # "I'll go ahead and send the invite"
    return predicate


def _willing_to(head: Token) -> Token | None:
    """The verb after "be sure/happy/glad/able/ready to", if ``head`` is that "be"."""
    if head.lemma_ != "be":
        return None
    adjective = next((c for c in head.children if c.dep_ == "acomp" and c.lower_ in _WILLING), None)
    return _xcomp(adjective) if adjective is not None else None


def _is_non_action(verb: Token) -> bool:
    lemma = verb.lemma_.lower()
    if lemma in _FOLLOW_UP_PARTICLES and _particles(verb) & _FOLLOW_UP_PARTICLES[lemma]:
        return False
    if lemma in {"take", "have", "get"} and _objects(verb) & _SMALL_TALK_OBJECTS:
        return True
    if lemma == "get" and "ahead" in _particles(verb):
        return True
    if lemma in _LEAVING_VERBS and not any(c.dep_ == "dobj" for c in verb.children) and not _is_follow_up(verb):
        return True  # "I have to leave early", "I need to jump to another call"
    if lemma in {"tell", "say"} and any(c.lower_ == "you" for c in verb.children):
        return True  # "I'll tell you what...", "let me tell you": talk, not a task
    if lemma == "move" and "on" in _particles(verb):
        return True  # "let's move on to the next item"
    if lemma == "look" and _particles(verb) & {"into", "at", "over", "through", "after", "for"}:
        return False  # "look into it" is work; a bare "look, ..." is not
    return lemma in _NON_ACTION


def _particles(verb: Token) -> set[str]:
    """Words completing a phrasal verb ("follow up", "touch base"), from the parse and from the next word."""
    attached = {c.lower_ for c in verb.children if c.dep_ in {"prt", "advmod", "dobj", "npadvmod", "prep"}}
    return attached | ({verb.doc[verb.i + 1].lower_} if verb.i + 1 < len(verb.doc) else set())


def _objects(verb: Token, prepositions: set[str] | None = None) -> set[str]:
    """Lemmas and words of the verb's objects, also through a preposition (any, or one of ``prepositions``)."""
    direct = [c for c in verb.children if c.dep_ in {"dobj", "attr", "dative", "pobj"}]
    through_preposition = [
        g for c in verb.children if c.dep_ == "prep" and (prepositions is None or c.lower_ in prepositions)
        for g in c.children if g.dep_ == "pobj"
    ]  # fmt: skip
    return {t.lemma_.lower() for t in direct + through_preposition} | {t.lower_ for t in direct + through_preposition}


def _is_inverted(head: Token, subject: Token) -> bool:
    return any(aux.i < subject.i for aux in _auxiliaries(head)) or (head.lemma_ == "be" and head.i < subject.i)


def _is_vocative(token: Token) -> bool:
    """A name said to someone: "Maria, can you...", "lisa can you...", "Raj, make sure..."."""
    if not token.is_alpha or token.is_stop or token.lower_ in _DISCOURSE or token.i + 2 >= len(token.doc):
        return False
    before = token.doc[token.i - 1] if token.i > 0 else None
    if before is not None and before.lower_ in {"hey", "hi", "hello", "thanks"}:
        return True  # "hey tom, ..."
    if before is not None and not (before.is_punct or before.lower_ in _DISCOURSE or before.pos_ == "INTJ"):
        return False
    following, after = token.doc[token.i + 1], token.doc[token.i + 2]
    if following.text == ",":
        return (
            token.is_title
            and not token.lower_.endswith("ly")
            and token.pos_ not in {"VERB", "AUX", "ADJ", "PRON", "DET", "ADP", "INTJ", "SCONJ", "CCONJ", "NUM"}
        )
    asks = following.lower_ in {"can", "could", "would", "will"} and after.lower_ in {"you", "u"}
    return asks or following.lower_ == "please"


def _vocative_names(sentence: Span) -> list[str]:
    names = [token.text for token in sentence if token.i < sentence.root.i and _is_vocative(token)]
    return [name[:1].upper() + name[1:] for name in names]


def _addressee(sentence: Span) -> str | None:
    names = _vocative_names(sentence)
    return names[0] if len(names) == 1 else None


def _imperative(head: Token, predicate: Token, modal: str | None, sentence: Span) -> _Commitment | None:
    if head.tag_ not in {"VB", "VBP"} or head.lower_ != head.lemma_.lower() or modal not in {None, "request_do"}:
        return None
    first = _first_content_token(sentence)
    if first is None or (first != head and not (first.lemma_ == "do" and first.head == head)):
        return None
    if _asks_for_information(predicate):
        return None  # "tell me about yourself" asks a question
    polite = any(t.lower_ == "please" for t in sentence) or _addressee(sentence) is not None
    return _Commitment(predicate, "addressee", _addressee(sentence), 0.85 if polite else 0.7)


def _request(subject: Token, predicate: Token, modal: str | None, sentence: Span) -> _Commitment | None:
    """Inverted clauses: "can you send...", "could someone review...", "should we set up a call..."."""
    who = subject.lower_
    if who == "you" and modal in {"ability", "future", "hypothetical"}:
        if _asks_for_information(predicate):
            return None
        return _Commitment(predicate, "addressee", _addressee(sentence), 0.85)
    if who in {"someone", "somebody", "anyone", "anybody"} and modal == "ability":
        return _Commitment(predicate, "group", None, 0.75)
    if who in {"we", "i"} and modal in {"ability", "obligation"} and _is_follow_up_chain(predicate):
        return _Commitment(predicate, "group", None, 0.8)
    return None


def _asks_for_information(verb: Token) -> bool:
    """ "tell me...", "walk me through...", "give me an example": but "remind me to call" asks for an action."""
    if verb.lemma_ == "give":
        return bool(_objects(verb) & {"example", "overview", "sense", "idea"})
    return verb.lemma_.lower() in _INFO_VERBS and _xcomp(verb) is None


def _declared(subject: Token, predicate: Token, modal: str | None, sentence: Span) -> _Commitment | None:
    who = subject.lower_
    dated = mentions_due_date(sentence.text)
    if modal == "ability" and who in {"i", "we"} and dated:
        # "I can do that by Friday": an offer more often than a promise; below the default threshold of 0.5
        return _Commitment(predicate, "speaker" if who == "i" else "group", None, 0.4)
    if modal == "progressive" and dated:
        modal = "future"
    if modal not in {"future", "obligation"}:
        return None
    if who == "i":
        return _Commitment(predicate, "speaker", None, 0.9 if modal == "future" else 0.85)
    if who == "we":
        should = any(aux.lower_ == "should" for aux in _auxiliaries(subject.head))
        return _Commitment(predicate, "group", None, 0.65 if should else 0.8)
    if who == "you" and predicate.lemma_ not in {"get", "receive", "hear", "see", "have", "find", "notice"}:
        return _Commitment(predicate, "addressee", _addressee(sentence), 0.75)  # not "you'll get an email"
    if who in _GROUP_SUBJECTS or subject.lemma_.lower() in _TEAM_NOUNS:
        return _Commitment(predicate, "group", None, 0.7)
    if _looks_like_person(subject):
        return _Commitment(predicate, "named", _full_name(subject), 0.85)
    return None


def _looks_like_person(token: Token) -> bool:
    return token.pos_ == "PROPN" or (token.is_title and token.is_alpha and token.dep_ != "nsubj")


def _full_name(subject: Token) -> str:
    parts = [c for c in subject.children if c.dep_ == "compound" and c.pos_ == "PROPN" and c.i < subject.i]
    return " ".join(t.text for t in [*parts, subject])


def _let_commitment(let: Token, sentence: Span) -> _Commitment | None:
    """ "let's X" (a proposal), "let me X" (the speaker), "let me know" (a request to get back).

    Read from the words, not the parse: the small model often makes "let's sync" a noun phrase.
    """
    words = [t for t in sentence if t.i > let.i and not t.is_punct]
    if len(words) < 2 or words[0].lower_ not in {"'s", "us", "me"}:
        return None
    who, rest = words[0].lower_, [t for t in words[1:] if t.lower_ not in {"just", "quickly", "also", "maybe"}]
    if not rest or rest[0].lower_ in {"not", "n't", "never"}:
        return None
    action = rest[0]
    if who == "me" and action.lemma_ == "know":
        return _Commitment(let, "addressee", _addressee(sentence), 0.7)
    if _is_non_action(action):
        return None
    if who == "me":
        return _Commitment(action, "speaker", None, 0.8)
    return _Commitment(action, "group", None, 0.8)


# --- follow-ups ---------------------------------------------------------------------------------------------------


def _chained_verbs(verb: Token) -> list[Token]:
    """The verb and the verbs coordinated with it or its purpose ("talk to finance and get back to you")."""
    chain = [verb]
    for token in chain:
        chain += [
            c
            for c in token.children
            if c.dep_ in {"conj", "xcomp", "advcl"}
            and c.pos_ == "VERB"
            and not any(g.lower_ == "if" for g in c.children)
        ]
    return chain


def _is_follow_up_chain(verb: Token) -> bool:
    return any(_is_follow_up(v) for v in _chained_verbs(verb))


def _is_follow_up(verb: Token) -> bool:
    lemma = "ping" if verb.lower_.startswith("ping") else verb.lemma_.lower()  # the lemmatiser makes "pinging" "pe"
    if lemma in _FOLLOW_UP_VERBS:
        return not (lemma == "meet" and _objects(verb) & {"deadline", "target", "goal", "requirement", "expectation"})
    if lemma in _FOLLOW_UP_PARTICLES and _particles(verb) & _FOLLOW_UP_PARTICLES[lemma]:
        return True
    if lemma == "let" and any(c.lemma_ == "know" for c in verb.children):
        return True
    if lemma == "keep" and any(c.lower_ in {"posted", "updated", "informed"} for c in verb.subtree):
        return True
    if lemma in {"call", "update"} and any(c.dep_ == "dobj" and c.lower_ in _PEOPLE_PRONOUNS for c in verb.children):
        return True
    if lemma in {"talk", "speak", "chat"} and any(c.lower_ in {"again", "soon", "later"} for c in verb.children):
        return True
    if lemma == "give" and _objects(verb) & {"call", "ring", "shout"}:
        return True
    if lemma == "take" and "offline" in _particles(verb) | _objects(verb):
        return True  # "let's take this offline": talk about it separately, later
    return lemma in _SCHEDULING_VERBS and bool(_objects(verb, {"on", "for", "onto", "in"}) & _MEETING_NOUNS)


# --- due dates ----------------------------------------------------------------------------------------------------


def _due_phrase(sentence: Span, verb: Token, local_now: datetime) -> DuePhrase | None:
    """The date phrase inside the action's own words, else anywhere in the sentence's commitment."""
    phrases = find_due_phrases(sentence.text, local_now)
    if not phrases:
        return None
    own = {t.idx - sentence.start_char for t in verb.subtree if not _is_other_clause(t, verb)}
    inside = [p for p in phrases if p.start in own or any(p.start <= i < p.end for i in own)]
    return (inside or phrases)[0]


def _is_other_clause(token: Token, verb: Token) -> bool:
    head = token
    while head != verb:
        if head.dep_ in {"conj", "advcl", "relcl", "ccomp"} and head.pos_ in {"VERB", "AUX"}:
            return True
        head = head.head
    return False
