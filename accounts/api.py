"""`GET /api/me/`: who the caller is and their role."""
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.roles import ROLES, role_of


class MeOutputSerializer(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=ROLES, allow_null=True)


class MeApi(APIView):
    # Any signed-in user, a role or not: a user refused everywhere else learns why here (`role: null`).
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=MeOutputSerializer)
    def get(self, request) -> Response:
        return Response(MeOutputSerializer({"username": request.user.get_username(), "role": role_of(request.user)}).data)
