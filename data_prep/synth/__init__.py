"""The synthetic dyadic-conversation corpus: identities, speech, behaviour, motion, renderer, builder."""
