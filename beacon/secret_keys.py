"""Which values cannot be secret keys (SECRET_KEY, BEACON_SIGNING_KEYS): the settings refuse them at
start-up unless DEBUG is on. Anyone who knows a key can sign tracking tokens, and so unsubscribe every
recipient (message ids are sequential); a key copied from an example file, or short enough to guess, is
known.
"""
MIN_KEY_BYTES = 32
# What example files and tutorials put in a secret's place (.env.example has the first two).
PLACEHOLDER_MARKERS = ("change-me", "changeme", "change_me", "replace-me", "replace_me", "your-secret", "django-insecure")
MAKE_ONE = 'python3 -c "import secrets; print(secrets.token_urlsafe(50))"'


def weak_key_problem(key: str) -> str:
    """Why `key` cannot be a secret key, or '' if it can."""
    lowered = key.lower()
    if any(marker in lowered for marker in PLACEHOLDER_MARKERS):
        return "is a placeholder from an example"
    if len(key.encode("utf-8", "surrogatepass")) < MIN_KEY_BYTES:
        return f"is shorter than {MIN_KEY_BYTES} bytes"
    if len(set(key)) < 5:
        return "repeats too few different characters"
    return ""


def weak_keys_message(name: str, keys: list[str]) -> str:
    """The start-up error for setting `name` holding these keys, or '' if every key is strong."""
    problems = [(number, weak_key_problem(key)) for number, key in enumerate(keys, start=1)]
    problems = [(number, problem) for number, problem in problems if problem]
    if not problems:
        return ""
    which = "; ".join(f"key {number} {problem}" if len(keys) > 1 else problem for number, problem in problems)
    return (
        f"{name} {which}: anyone who knows or guesses it can forge what it signs. Make a key with {MAKE_ONE} "
        f"(at least {MIN_KEY_BYTES} bytes), or set DEBUG=true for local development only."
    )
