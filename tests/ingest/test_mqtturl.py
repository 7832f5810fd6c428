import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest import mqtturl
from ingest.errors import IngestError


@pytest.mark.parametrize("url, host, port, tls, user, password", [
    ("mqtt://127.0.0.1:1883", "127.0.0.1", 1883, False, None, None),
    ("mqtt://broker.local", "broker.local", 1883, False, None, None),
    ("tcp://broker.local:11883", "broker.local", 11883, False, None, None),
    ("mqtts://broker.example.com", "broker.example.com", 8883, True, None, None),
    ("mqtts://user:password@host:8883", "host", 8883, True, "user", "password"),
    ("mqtts://collector%40gongshu:p%3Ass%2Fw0rd@mq.gov.example:9883", "mq.gov.example", 9883,
     True, "collector@gongshu", "p:ss/w0rd"),
    ("mqtt://onlyuser@host", "host", 1883, False, "onlyuser", None),
    ("MQTTS://h:1", "h", 1, True, None, None),
    ("mqtt://[::1]:1883", "::1", 1883, False, None, None),
])
def test_broker_url_is_parsed(url, host, port, tls, user, password):
    a = mqtturl.parse(url)
    assert (a.host, a.port, a.tls, a.username, a.password) == (host, port, tls, user, password)


@pytest.mark.parametrize("url, says", [
    ("http://host:1883", "scheme"),
    ("host:1883", "scheme"),
    ("mqtt://", "no host"),
    ("mqtt://host:99999", "not valid"),
    ("mqtt://host:1883/topic", "path"),
    ("mqtt://host?ca=x", "query"),
])
def test_bad_broker_url_says_what_is_wrong(url, says):
    with pytest.raises(IngestError, match=says):
        mqtturl.parse(url)


def test_password_never_shows_in_text():
    a = mqtturl.parse("mqtts://user:s3cret@host:8883")
    assert "s3cret" not in str(a) and "s3cret" not in repr(a)
    assert str(a) == "mqtts://user:***@host:8883"


def test_credentials_and_tls_reach_the_client():
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    mqtturl.configure(client, mqtturl.parse("mqtts://u:p@host"))
    assert client.username == "u" and client.password == "p"
    assert client._ssl_context is not None
    plain = mqtt.Client(CallbackAPIVersion.VERSION2)
    mqtturl.configure(plain, mqtturl.parse("mqtt://host"))
    assert plain.username is None and plain._ssl_context is None
