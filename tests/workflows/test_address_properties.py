"""Property: whatever variant of an address a ticket carries, the account chosen is the intended one or none.

Look-alikes (compatibility characters, other scripts, invisible characters) and case/whitespace variants
are generated around real directory addresses. The fake directory matches loosely (Unicode ``lower``), as a
careless directory lookup would: only mailunblock's own exact comparison stands between a look-alike and
somebody else's account.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mailunblock.workflows import addresses
from mailunblock.workflows.addresses import Address
from mailunblock.workflows.state import Stage

ACCOUNTS = ("mark", "alice", "sofia", "kim", "li")
# Characters that Unicode folds or that look like ASCII letters, and invisible ones.
LOOKALIKES = {
    "k": ["\u212a", "\u03ba", "\u043a", "\uff4b"],  # KELVIN SIGN, Greek kappa, Cyrillic ka, fullwidth k
    "a": ["\u0430", "\u00e0", "\uff41", "\u0251"],  # Cyrillic a, a-grave, fullwidth a, Latin alpha
    "i": ["\u0131", "\u0456", "\u2170", "\uff49"],  # dotless i, Cyrillic i, ROMAN NUMERAL ONE, fullwidth i
    "s": ["\u017f", "\u0455", "\uff53"],  # LONG S, Cyrillic dze, fullwidth s
    "o": ["\u043e", "\u03bf", "\uff4f"],
    "l": ["\u04cf", "\u217c", "\uff4c"],
    "m": ["\u217f", "\uff4d"],
    "f": ["\ufb00", "\uff46"],
    "r": ["\u0433", "\uff52"],
}
INVISIBLE = ["\u200b", "\u200d", "\u2060", "\u00ad", "\u202e", "\ufeff"]


@st.composite
def variant(draw: st.DrawFn) -> tuple[str, str, bool]:
    """(intended address, written form, whether it is only a case/whitespace variant).

    At most one character is swapped for a look-alike or gets an invisible neighbour, so a variant is
    one plausible step away from a real address (several steps are refused anyway by the syntax check).
    """
    name = draw(st.sampled_from(ACCOUNTS))
    domain = draw(st.sampled_from(["contoso.com", "contoso.fr"]))
    intended = f"{name}@{domain}"
    chars = [c.upper() if c.isalpha() and draw(st.booleans()) else c for c in intended]
    exact = True
    spots = [i for i, c in enumerate(intended) if c in LOOKALIKES]
    change = draw(st.sampled_from(["none", "lookalike", "invisible"]))
    if change == "lookalike" and spots:
        index = draw(st.sampled_from(spots))
        chars[index] = draw(st.sampled_from(LOOKALIKES[intended[index]]))
        exact = False
    elif change == "invisible":
        index = draw(st.integers(0, len(chars)))
        chars.insert(index, draw(st.sampled_from(INVISIBLE)))
        exact = False
    pad = draw(st.sampled_from(["", " ", "\t", "  "]))
    return intended, f"{pad}{''.join(chars)}{pad[::-1]}", exact


def _directory(world) -> None:
    base = world.directory.users.pop("u-alice")
    for name in ACCOUNTS:
        for domain in ("contoso.com", "contoso.fr"):
            address = f"{name}@{domain}"
            world.directory.users[f"u-{address}"] = replace(
                base, id=f"u-{address}", user_principal_name=address, mail=address,
                proxy_addresses=(f"SMTP:{address}",))
            world.restricted.block(address)

    def loose(address: str):  # what a careless lookup does: Unicode folding, trimming
        folded = address.strip().lower()
        return [u for u in world.directory.users.values() if u.user_principal_name.lower() == folded]

    world.directory.find_users_by_address = loose  # type: ignore[method-assign]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=variant(), where=st.sampled_from(["field", "reporter", "text"]))
@example(case=("mark@contoso.com", "mar\u212a@contoso.com", False), where="reporter")  # KELVIN SIGN
@example(case=("sofia@contoso.com", "\u017fofia@contoso.com", False), where="field")  # LONG S (NFKC: s)
def test_the_account_is_the_intended_one_or_none(make_world, case, where) -> None:
    intended, written, exact = case
    world = make_world()
    _directory(world)
    if where == "field":
        world.tickets.affected_account = written
    elif where == "reporter":
        world.tickets.reporter = replace(world.alice, email=written)
    else:
        world.tickets.reporter = replace(world.alice, email=None)
        world.tickets.description = f"Please help, {written} cannot send."
    state = world.cycle()
    if exact:
        assert state.account_upn == intended, (written, state.refusal)
    else:
        assert state.account_id is None, f"a look-alike {written!r} was mapped onto {state.account_upn}"
        assert (state.stage, state.refusal) == (Stage.REFUSED, "lookalike"), (written, state.refusal)
    assert world.directory.resets == [] and world.restricted.unblocks == []  # triage never writes


@given(st.text(max_size=40))
def test_canonical_never_maps_non_ascii(text: str) -> None:
    result = addresses.canonical(text)
    if isinstance(result, Address):
        assert text.strip().isascii() and result.value == text.strip().lower()
