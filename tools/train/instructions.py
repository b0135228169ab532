#!/usr/bin/env python3
"""Instructions for a chat model's drafter: chat, code and math requests, written for this project
from templates and subject lists (no dataset is downloaded). Deterministic.

    python tools/train/instructions.py      # writes tools/train/data/instructions-train.jsonl
                                            # and bench/prompts/chat-heldout-{chat,code,math}.jsonl

The held-out prompts come from their own subject lists (every subject appears on one side only),
so no held-out prompt, and no held-out subject, is ever trained on; the script checks it.
"""
import json, os, random

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))

CHAT = [
    "What is {s}?", "Explain {s} in simple terms.", "Give me three facts about {s}.",
    "Why is {s} important?", "Write a short paragraph about {s}.", "Tell me something interesting about {s}.",
    "How would you describe {s} to a child?", "What are the pros and cons of {s}?",
    "Write a haiku about {s}.", "Summarize what you know about {s} in two sentences.",
    "What should a beginner know about {s}?", "Give me a fun fact about {s}.",
]
CHAT_SUBJECTS = [
    # train side
    ["photosynthesis", "the moon", "volcanoes", "the ocean", "coffee", "democracy", "the internet", "rainbows",
     "the Roman Empire", "honey bees", "electricity", "gravity", "the human heart", "music", "chess",
     "climate change", "recycling", "the Eiffel Tower", "dinosaurs", "friendship", "sleep", "bicycles",
     "the solar system", "vaccines", "libraries", "tea", "elephants", "the Amazon rainforest", "money",
     "the printing press", "earthquakes", "snow", "the French Revolution", "penguins", "exercise", "bread",
     "airplanes", "the water cycle", "mathematics", "poetry", "the brain", "deserts", "trains", "cats",
     "the Great Wall of China", "solar energy", "mushrooms", "kindness", "the Olympic Games", "clouds"],
    # held-out side
    ["tides", "the Renaissance", "owls", "wind turbines", "chocolate", "glaciers", "the telephone",
     "jazz", "coral reefs", "meditation", "the Pyramids of Giza", "lightning"],
]
CODE = [
    "Write a Python function that {s}.", "Write a JavaScript function that {s}.",
    "How do I write a function that {s} in Python?", "Show me Python code that {s}.",
    "Write a short C function that {s}.", "Explain how to write a program that {s}.",
]
CODE_SUBJECTS = [
    ["reverses a string", "checks if a number is prime", "returns the largest element of a list",
     "counts the vowels in a string", "computes the factorial of n", "sorts a list of numbers",
     "adds two numbers", "checks if a string is a palindrome", "returns the nth Fibonacci number",
     "removes duplicates from a list", "converts Celsius to Fahrenheit", "sums the elements of a list",
     "finds the average of a list", "counts the words in a sentence", "checks if a year is a leap year",
     "returns the even numbers of a list", "merges two sorted lists", "computes the greatest common divisor",
     "capitalizes every word in a sentence", "reads a file and prints its lines", "squares every number in a list",
     "finds the minimum of three numbers", "converts a string to uppercase", "prints a multiplication table"],
    ["flattens a nested list", "counts how often each character appears in a string",
     "checks if two strings are anagrams", "rotates a list by k positions", "converts binary to decimal",
     "returns the second largest number in a list"],
]
MATH = [
    "What is {a} + {b}?", "What is {a} times {b}?", "What is {a} minus {b}?", "Calculate {a} * {b}.",
    "Solve for x: {a}x + {b} = {c}.", "What is {p}% of {n}?",
    "If I have {a} apples and buy {b} more, how many apples do I have?",
    "A train travels {n} km in {h} hours. What is its average speed?",
    "What is the area of a rectangle with sides {a} and {b}?",
    "A shop sells pens for {a} dollars each. How much do {b} pens cost?",
    "What is the perimeter of a square with side {a}?", "Is {n} an even or an odd number?",
]


def math_prompts(rng, count, numbers):
    out = set()
    while len(out) < count:
        t = rng.choice(MATH)
        a, b = rng.choice(numbers), rng.choice(numbers)
        out.add(t.format(a=a, b=b, c=a * 3 + b, p=rng.choice([10, 20, 25, 50, 75]), n=rng.choice(numbers) * 4,
                         h=rng.choice([2, 4])))
    return sorted(out)


def main():
    rng = random.Random(20261207)
    train, held = [], {"chat": [], "code": [], "math": []}
    for side, subjects in enumerate(CHAT_SUBJECTS):
        for s in subjects:
            for t in CHAT:
                (train if side == 0 else held["chat"]).append(("chat", t.format(s=s)))
    for side, subjects in enumerate(CODE_SUBJECTS):
        for s in subjects:
            for t in CODE:
                (train if side == 0 else held["code"]).append(("code", t.format(s=s)))
    # math: train numbers 2..59, held-out numbers 61..99 (every operand on one side only)
    train += [("math", p) for p in math_prompts(rng, 900, list(range(2, 60)))]
    held["math"] = [("math", p) for p in math_prompts(rng, 40, list(range(61, 100)))]
    rng.shuffle(train)
    held = {k: rng.sample(v, min(24, len(v))) for k, v in held.items()}
    train_set = {p for _, p in train}
    assert not any(p in train_set for v in held.values() for _, p in v), "a held-out prompt is in the train set"

    os.makedirs(os.path.join(HERE, "data"), exist_ok=True)
    with open(os.path.join(HERE, "data", "instructions-train.jsonl"), "w") as f:
        for i, (cat, p) in enumerate(train):
            f.write(json.dumps({"id": f"train-{i:04d}", "category": cat, "prompt": p}) + "\n")
    for cat, rows in held.items():
        with open(os.path.join(REPO, "bench", "prompts", f"chat-heldout-{cat}.jsonl"), "w") as f:
            for i, (_, p) in enumerate(rows):
                f.write(json.dumps({"id": f"heldout-{cat}-{i:03d}", "category": cat, "prompt": p}) + "\n")
    counts = {c: sum(1 for x, _ in train if x == c) for c in held}
    print(f"train: {len(train)} instructions {counts}; held-out: {', '.join(f'{k} {len(v)}' for k, v in held.items())}")


if __name__ == "__main__":
    main()
