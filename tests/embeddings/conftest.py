import pytest

from clients.embeddings.noss import NossConfig

TINY_NOSS = dict(n_speakers=4, speaker_clips=3, languages=("en-us", "de", "fr"), language_speakers=2,
                 language_clips=2, command_words=("yes", "no", "up"), command_speakers=3, command_repeats=2,
                 styles=("neutral", "sad", "angry"), style_speakers=2, style_repeats=2, mask_speakers=3,
                 mask_clips=2, severity_speakers=4, severity_clips=2)


@pytest.fixture
def tiny_noss():
    return NossConfig(**TINY_NOSS)
