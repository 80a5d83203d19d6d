"""`curator generate`: plan a curriculum into slots, prompt the teacher per slot, keep or quarantine each reply."""
