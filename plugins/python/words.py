"""Words of a text as a sandboxed Python table function."""

import fungi


@fungi.udtf(returns={"word": "STRING", "position": "BIGINT"}, args=["STRING"])
def split_words(line):
    """Each whitespace-separated word, numbered from 1 (a blank line gives no rows)."""
    for i, word in enumerate(line.split()):
        yield word, i + 1
