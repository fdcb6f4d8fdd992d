import torch

from vmfmir_example_plugin.encoder import CharBowEncoder


def test_features_are_deterministic_and_batched():
    enc = CharBowEncoder(dim=16).eval()
    batch = enc.collate([enc.preprocess(t) for t in ["Bach chorale", "a lullaby", ""]])
    with torch.no_grad():
        first, second = enc(batch), enc(batch)
    assert first.shape == (3, 16)
    assert torch.equal(first, second)


def test_round_trip_through_config():
    enc = CharBowEncoder(dim=8, buckets=64)
    clone = CharBowEncoder.from_config(enc.config())
    clone.load_saved_state(enc.state_dict_for_saving())
    x = enc.collate([enc.preprocess("Ode to joy")])
    assert torch.equal(enc.eval()(x), clone.eval()(x))


def test_plugin_registers_the_encoder():
    import vmfmir_example_plugin

    registered = []
    vmfmir_example_plugin.register_encoders(register=lambda cls, aliases=(): registered.append((cls, aliases)))
    assert registered == [(CharBowEncoder, ("bow",))]
