"""Go's json.Unmarshal type rules for request bodies (bosun.engine.gotypes)."""

from __future__ import annotations

import pytest

from bosun.engine import gotypes as G
from bosun.engine.errors import InvalidParameter


def create(body):
    return G.check(body, G.CONTAINER_CREATE, "ContainerConfigWrapper")


@pytest.mark.parametrize("body, message", [
    ({"Env": "A=1"}, "cannot unmarshal string into Go struct field ContainerConfigWrapper.Env "
                     "of type []string"),
    ({"Labels": ["a"]}, "unmarshal array into Go struct field ContainerConfigWrapper.Labels of "
                        "type map[string]string"),
    ({"HostConfig": {"ShmSize": "64m"}}, "unmarshal string into Go struct field "
                                         "ContainerConfigWrapper.HostConfig.ShmSize of type int64"),
    ({"HostConfig": {"Memory": 2 ** 63}}, "number 9223372036854775808 into Go struct field "
                                          "ContainerConfigWrapper.HostConfig.Memory of type int64"),
    ({"HostConfig": {"BlkioWeight": -1}}, "number -1 into Go struct field "
                                          "ContainerConfigWrapper.HostConfig.BlkioWeight of type "
                                          "uint16"),
    ({"HostConfig": {"CpuShares": 1.5}}, "number 1.5 into"),
    ({"HostConfig": {"Privileged": 1}}, "number 1 into"),
    ({"HostConfig": {"Ulimits": ["nofile=1"]}}, "HostConfig.Ulimits of type units.Ulimit"),
    ({"Cmd": 5}, "number 5 into Go struct field ContainerConfigWrapper.Cmd of type "
                 "strslice.StrSlice"),
    ({"Cmd": ["a", 1]}, "array into Go struct field ContainerConfigWrapper.Cmd"),
    ({"NetworkingConfig": {"EndpointsConfig": {"bridge": {"IPAMConfig": "x"}}}},
     "EndpointsConfig.IPAMConfig of type network.EndpointIPAMConfig"),
])
def test_wrong_types_are_invalid_parameters(body, message):
    with pytest.raises(InvalidParameter) as e:
        create(body)
    assert message in str(e.value)


def test_well_typed_bodies_pass_and_strslices_become_lists():
    body = {"Image": "busybox", "Cmd": "true", "Entrypoint": None, "Unknown": {"x": 1},
            "HostConfig": {"CapAdd": "NET_ADMIN", "Memory": 0, "Init": None,
                           "PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}}
    out = create(body)
    assert out["Cmd"] == ["true"] and out["HostConfig"]["CapAdd"] == ["NET_ADMIN"]
    assert out["Unknown"] == {"x": 1} and out["Entrypoint"] is None
    assert body["Cmd"] == "true"  # the caller's body is left alone


@pytest.mark.parametrize("schema, struct, body, message", [
    (G.NETWORK_CREATE, "CreateRequest", {"Name": "n", "IPAM": "x"},
     "string into Go struct field CreateRequest.IPAM of type network.IPAM"),
    (G.NETWORK_CREATE, "CreateRequest", {"Name": "n", "Options": {"mtu": 1500}},
     "number 1500 into Go struct field CreateRequest.Options of type string"),
    (G.NETWORK_CONNECT, "ConnectOptions", {"Container": "c", "EndpointConfig": {"IPAMConfig": 1}},
     "number 1 into Go struct field ConnectOptions.EndpointConfig.IPAMConfig of type "
     "network.EndpointIPAMConfig"),
    (G.NETWORK_DISCONNECT, "DisconnectOptions", {"Container": "c", "Force": "x"},
     "string into Go struct field DisconnectOptions.Force of type bool"),
    (G.VOLUME_CREATE, "CreateOptions", {"Name": 5},
     "number 5 into Go struct field CreateOptions.Name of type string"),
    (G.EXEC_START, "ExecStartCheck", {"Detach": "yes"},
     "string into Go struct field ExecStartCheck.Detach of type bool"),
    (G.UPDATE_CONFIG, "UpdateConfig", {"CpuShares": 2 ** 64},
     "number 18446744073709551616 into Go struct field UpdateConfig.CpuShares of type int64"),
    (G.VOLUME_CREATE, "CreateOptions", [],  # the body itself: Go names only the type
     "json: cannot unmarshal array into Go value of type volume.CreateOptions"),
])
def test_other_bodies(schema, struct, body, message):
    with pytest.raises(InvalidParameter) as e:
        G.check(body, schema, struct)
    assert message in str(e.value)


def test_null_elements_are_zero_values():
    out = create({"HostConfig": {"VolumesFrom": [None], "Ulimits": [None],
                                 "ConsoleSize": [None, 5]}})
    assert out["HostConfig"] == {"VolumesFrom": [""], "Ulimits": [{}], "ConsoleSize": [0, 5]}
