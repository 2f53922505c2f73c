def test_build(service_venv):
    assert service_venv.python.exists()
