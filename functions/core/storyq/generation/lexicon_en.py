"""The English word bank of the template generator."""

from __future__ import annotations

from storyq.generation.lexicon import Lexicon, Section
from storyq.generation.lexicon_en_genres import GENRES

_SECTIONS: dict[Section, tuple[str, ...]] = {
    "opening": (
        "{hero} had lived near {place} for as long as {he} could remember, and {he} knew every "
        "crooked path that led there.",
        "Nobody in town spoke about {place} after dark, which was exactly why {hero} went.",
        "The morning it began, {hero} woke to {sound} and the feeling that something had "
        "shifted overnight.",
        "{friend} was the only one who believed {him}, and even {fhe} believed {him} only halfway.",
        "There were stories about {artifact}, of course, but stories were cheap and {hero} "
        "had never trusted them.",
        "{place_loc}, the air smelled of rain and old secrets.",
        "{hero} noticed {sight} and stopped, because it had not been there the day before.",
        "It was an ordinary week until the letter arrived, written in a hand {hero} did not "
        "recognise.",
        "{His} grandmother used to say that {threat} only came to those who went looking for "
        "trouble.",
        "That evening {hero} told {friend} everything, and {friend} listened without "
        "interrupting once.",
        "{hero} packed a small bag: bread, a knife, a notebook, and the courage {he} hoped {he} "
        "would not need.",
        "For years {place} had been quiet, and quiet places, {hero} knew, were rarely empty.",
    ),
    "development": (
        "They reached {place} as the light was failing, and {friend} lit a lamp with "
        "trembling hands.",
        "Under a loose stone {hero} found the first clue: a mark that matched the old drawings "
        "of {artifact}.",
        "Every step forward seemed to cost them something, a little warmth, a little certainty.",
        "{friend} wanted to turn back, and for a long moment {hero} almost agreed.",
        "Somewhere ahead, {sound} rose and faded, as if the place itself were breathing.",
        "They argued in whispers about what {threat} really wanted, and neither of them won.",
        "{hero} wrote everything down, because memory had started to play tricks on {him}.",
        "By the third day the map no longer matched the land, and {hero} stopped trusting the map.",
        "{friend} laughed for the first time in days, and the sound made the dark feel smaller.",
        "{hero} realised that {artifact} was not a treasure at all but a promise someone had "
        "broken.",
        "A stranger crossed their path, spoke three careful sentences, and was gone before "
        "{hero} could ask a fourth question.",
        "They slept in turns, and in {his} dreams {hero} saw {sight}.",
        "Each answer they found opened two new questions, and still they kept walking.",
        "{hero} began to understand why no one who had been {place_loc} ever spoke of it.",
    ),
    "turn": (
        "Then {threat} came, not all at once but the way a tide comes, patient and certain.",
        "It happened at dusk: {threat} was suddenly there, closer than anyone had thought "
        "possible.",
        "Nobody heard {threat} arrive; one moment the way was clear, and the next it was not.",
    ),
    "climax": (
        "{hero} held {artifact} in both hands and felt it answer, warm as a living thing.",
        "{friend} shouted a warning, but the words were swallowed by {sound}.",
        "For one terrible heartbeat {hero} was sure they had lost.",
        "Everything {he} had learned came down to a single choice, and there was no time to "
        "weigh it.",
        "{hero} stepped forward, because someone had to, and because {he} was tired of being "
        "afraid.",
        "The ground shook, the lights guttered, and the whole world seemed to hold its breath.",
        "{friend} grabbed {his} sleeve and would not let go, no matter what.",
        "{hero} spoke the words from the old drawings, and {his} voice did not break.",
    ),
    "aftermath": (
        "It was over faster than either of them would later believe.",
        "And then, as suddenly as it had begun, everything was quiet.",
        "When the dust settled, {hero} was still standing, and so was {friend}.",
    ),
    "resolution": (
        "When morning came, {place} looked smaller, almost ordinary, as if it had never been "
        "anything else.",
        "{hero} and {friend} walked home slowly, saying little, because little needed saying.",
        "{artifact} went back where it belonged, and this time {hero} made sure it would stay "
        "there.",
        "People asked questions, and {hero} answered some of them.",
        "{friend} kept a small piece of the story for {fhim}self and never told anyone which "
        "piece.",
        "Years later, {hero} would still wake sometimes to the memory of {sound}.",
        "But the fear was gone, and in its place was something steadier.",
    ),
    "closing": (
        "And that, in the end, was how {hero} learned that the bravest stories are the ones we "
        "finish.",
        "{hero} smiled, closed the notebook, and for the first time in a long while slept "
        "without dreaming.",
        "Some doors stay closed; this one, at last, had been opened and shut properly.",
    ),
}

_STOPWORDS = """
about after again also because been before being could does from have into just like make
more most much must only other over some such than that their them then there these they
this those through very what when where which while with would your story tale write tell
please short long once upon time
"""

ENGLISH = Lexicon(
    code="en",
    names={
        "female": (
            "Mara",
            "Elena",
            "Ada",
            "Nora",
            "Iris",
            "Lena",
            "Clara",
            "Maya",
            "Tess",
            "June",
        ),
        "male": (
            "Tom",
            "Leo",
            "Daniel",
            "Felix",
            "Owen",
            "Sam",
            "Arthur",
            "Jonah",
            "Eli",
            "Marcus",
        ),
    },
    pronouns={
        "female": {"he": "she", "He": "She", "his": "her", "His": "Her", "him": "her"},
        "male": {"he": "he", "He": "He", "his": "his", "His": "His", "him": "him"},
    },
    genres=GENRES,
    default_genre="adventure",
    genre_aliases={
        "fantasy": "fantasy",
        "fairy tale": "fantasy",
        "fairytale": "fantasy",
        "sci-fi": "scifi",
        "scifi": "scifi",
        "science fiction": "scifi",
        "science-fiction": "scifi",
        "space": "scifi",
        "mystery": "mystery",
        "detective": "mystery",
        "crime": "mystery",
        "thriller": "mystery",
        "horror": "horror",
        "ghost story": "horror",
        "romance": "romance",
        "love story": "romance",
        "adventure": "adventure",
        "action": "adventure",
    },
    genre_hints=(
        ("dragon", "fantasy"),
        ("wizard", "fantasy"),
        ("magic", "fantasy"),
        ("elf", "fantasy"),
        ("robot", "scifi"),
        ("space", "scifi"),
        ("planet", "scifi"),
        ("alien", "scifi"),
        ("detective", "mystery"),
        ("murder", "mystery"),
        ("clue", "mystery"),
        ("ghost", "horror"),
        ("haunted", "horror"),
        ("monster", "horror"),
        ("love", "romance"),
        ("date", "romance"),
        ("wedding", "romance"),
    ),
    stopwords=frozenset(_STOPWORDS.split()),
    instruction_prefix=(
        r"^(?:please\s+)?(?:write|tell|create|generate|give)\s+(?:me\s+|us\s+)?(?:an?\s+)?"
        r"(?:\w+\s+){0,2}?(?:story|tale)\s*(?:about|of|where|in which|on)?\s+"
    ),
    titles=(
        "The {artifact_title}",
        "{hero} and the {threat_title}",
        "Beyond the {place_title}",
        "The Last Night at the {place_title}",
        "What the {artifact_title} Remembered",
        "The Secret of the {place_title}",
    ),
    determiners=frozenset(
        {"a", "an", "the", "his", "her", "their", "my", "our", "its", "some", "one", "this"}
    ),
    premises=(
        "It all began with a thought that would not let go: {premise}.",
        "Later, people would sum it up in a single line: {premise}. The truth was longer.",
        "The whole affair, if you had asked {hero}, came down to this: {premise}.",
    ),
    keyword_lines=(
        '{hero} kept coming back to one word, "{keyword}", as if it were a key {he} had not '
        "yet learned to turn.",
        '"{Keyword}," {friend} said quietly. "That is what all of this is about."',
        'Everything, somehow, led back to "{keyword}".',
        'Whenever {hero} thought of "{keyword}", the path ahead seemed a little clearer.',
    ),
    sections=_SECTIONS,
)
